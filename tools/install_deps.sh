#!/usr/bin/env bash
# Installs the Debian packages tsa builds against (skips what is there).
# Used by tools/setup.sh, tools/test.sh and the Dockerfile: keep them in step.
#   tools/install_deps.sh [--test]   (--test adds clang for the sanitizer and fuzz builds)
set -euo pipefail
PKGS=(cmake g++ make pkg-config xz-utils python3 python3-pip
      libsentencepiece-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev
      libgtest-dev libgmock-dev libbenchmark-dev libpcre2-dev libutf8proc-dev libopenmpi-dev)
if [ "${1:-}" = "--test" ]; then
  PKGS+=(clang clang-format libclang-rt-14-dev libomp-14-dev git)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "[tsa] installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
