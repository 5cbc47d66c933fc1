#!/usr/bin/env bash
# Builds test_attention and bench_attention straight with nvcc (no CMake, no
# libtsa: only the attention kernels), for quick iterations on those kernels;
# the binaries link gtest and the C++ runtime statically so that they run on
# a GPU machine with another distribution.
#   bash bench/build_attention_bins.sh [out_dir=build-attn] [archs="90a 80"]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build-attn}
ARCHS=${2:-90a 80}
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
mkdir -p "$OUT/obj"
GEN=()
for a in $ARCHS; do GEN+=("-gencode=arch=compute_$a,code=sm_$a"); done
FLAGS=(-std=c++17 -O3 -I. -Isrc -Itests/unit -Itests/gpu --expt-relaxed-constexpr -lineinfo
       -Xptxas=-warn-spills -DTSA_FIXTURES_SRC=\"\" -DTSA_FIXTURES_BIN=\"\" -DTSA_SOURCE_DIR=\"\"
       -Xcompiler=-fopenmp)
KERNELS=(kernels/attention_prefill.cu kernels/attention_prefill_sm90.cu
         kernels/attention_prefill_dispatch.cu kernels/attention_decode.cu)
pids=()
for src in "${KERNELS[@]}" tests/gpu/test_attention.cpp tests/gpu/gpu_test_util.cpp \
           tests/unit/test_util.cpp bench/bench_attention.cu; do
  obj="$OUT/obj/$(basename "${src%.*}").o"
  if [[ $src == *.cu ]]; then
    "$NVCC" "${FLAGS[@]}" "${GEN[@]}" -c "$src" -o "$obj" &
  else
    "$NVCC" "${FLAGS[@]}" -x cu "${GEN[@]}" -c "$src" -o "$obj" &
  fi
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
KOBJ=()
for src in "${KERNELS[@]}"; do KOBJ+=("$OUT/obj/$(basename "${src%.*}").o"); done
LINK=(-Xcompiler=-fopenmp -Xlinker=-Bstatic -lgtest -lgtest_main -Xlinker=-Bdynamic
      -Xcompiler=-static-libstdc++ -Xcompiler=-static-libgcc)
"$NVCC" "${GEN[@]}" "${KOBJ[@]}" "$OUT/obj/test_attention.o" "$OUT/obj/gpu_test_util.o" \
  "$OUT/obj/test_util.o" "${LINK[@]}" -o "$OUT/test_attention"
"$NVCC" "${GEN[@]}" "${KOBJ[@]}" "$OUT/obj/bench_attention.o" -Xcompiler=-static-libstdc++ \
  -Xcompiler=-static-libgcc -o "$OUT/bench_attention"
echo "built $OUT/test_attention $OUT/bench_attention"
