#!/usr/bin/env bash
# Builds everything (the CUDA backend too when nvcc exists) and runs every
# test that needs no GPU; then builds the example against the installed
# CMake package. This is the README's test command and what CI runs.
#   TSA_BUILD_DIR (default build-test), TSA_CUDA_ARCHS (default 90a), TSA_JOBS
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh --test

# Formatting first: it is the cheapest check (.clang-format, clang-format 14).
git ls-files '*.h' '*.hpp' '*.cpp' '*.cu' '*.cuh' | xargs clang-format --dry-run -Werror

BUILD=${TSA_BUILD_DIR:-build-test}
JOBS=${TSA_JOBS:-$(nproc)}
cuda_args=()
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
# One architecture is enough to prove the CUDA code builds.
cuda_args+=("-DCMAKE_CUDA_ARCHITECTURES=${TSA_CUDA_ARCHS:-90a}")

# The default model, for its token-for-token test against transformers.
bash tools/get_default_model.sh "$BUILD/pyenv"

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PWD/$BUILD/install" \
  "${cuda_args[@]}"
cmake --build "$BUILD" -j"$JOBS"
# Tests run -j$JOBS at once: two OpenMP threads each keep a many-core
# machine from being oversubscribed (small-matmul tests then crawl).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# GPU tests carry the label gpu and skip themselves without a GPU; CI has none.
ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" -LE gpu

# AddressSanitizer + UndefinedBehaviorSanitizer build (clang) of the CPU
# engine: the CPU tests again, then each libFuzzer target for a bounded time
# on a copy of its seed corpus (tests/fuzz/corpus). TSA_SKIP_SANITIZE=1 skips.
if [ "${TSA_SKIP_SANITIZE:-0}" != 1 ]; then
  SAN=${BUILD}-san
  CC=clang CXX=clang++ cmake -S . -B "$SAN" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTSA_ENABLE_CUDA=OFF \
    -DTSA_SANITIZE=ON -DTSA_FUZZ=ON -DTSA_BUILD_BENCH=OFF
  cmake --build "$SAN" -j"$JOBS"
  export ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp
  ctest --test-dir "$SAN" --output-on-failure -j"$JOBS" -LE gpu
  FUZZ_SECONDS=${TSA_FUZZ_SECONDS:-60}
  for target in safetensors model_config sparsity_config tokenizer; do
    corpus=$(mktemp -d)
    cp tests/fuzz/corpus/$target/* "$corpus"/
    echo "[tsa] fuzzing $target for ${FUZZ_SECONDS}s"
    "$SAN/tests/fuzz/fuzz_$target" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=4096 \
      -print_final_stats=1 "$corpus" 2>&1 | tail -n 3
    rm -rf "$corpus"
  done
fi

# The library as users consume it: install, then find_package(tsa) from outside.
cmake --install "$BUILD" >/dev/null
cmake -S examples -B "$BUILD/example" -DCMAKE_PREFIX_PATH="$PWD/$BUILD/install"
cmake --build "$BUILD/example" -j"$JOBS"
"$BUILD/example/tsa-example" tests/fixtures/golden/qwen2-bias-tied
echo "[tsa] all tests passed"
