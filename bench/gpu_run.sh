#!/usr/bin/env bash
# Everything one GPU-machine call does, in one script: build tsa with CUDA
# (sm_90a) against the Debian packages carried in .debs/, run the GPU tests
# (and compute-sanitizer memcheck on them), then the benchmarks. Results and
# logs go to $OUT (or ./gpu-out); a short table is printed last.
#
#   bash bench/gpu_run.sh [build] [test] [sanitize] [kernels] [attn] [tsa] [model] [tsa-model] [tp] [tp70b] [ncu] [ncu-decode] [ncu-prefill] [ncu-source] [mpi]
#   (default: build test)
# TARGETS="a b" builds only those targets; TESTS=regex runs only the GPU tests
# it matches (and skips the CPU tests), to fit short device calls. The attn
# stage runs the attention tests (both prefill kernels) and the attention
# benchmark against torch SDPA (cuDNN). The tp stage (2+ GPUs) runs the
# tensor-parallel tests and tsa-bench at TP=1 and TP=2 (TP_PREFILL lengths).
#
# Carry: .debs (the .deb files of tools/install_deps.sh's libraries, fetched
# here with apt-get download), and models/SmolLM2-135M-Instruct if present.
# The mpi stage also needs .mpi-debs: Open MPI and what it loads, fetched with
#   apt-get download openmpi-bin openmpi-common libopenmpi3 libopenmpi-dev \
#     libpmix2 libpmix-dev libevent-2.1-7 libevent-core-2.1-7 libevent-pthreads-2.1-7 \
#     libevent-extra-2.1-7 libevent-openssl-2.1-7 libevent-dev libhwloc15 libhwloc-plugins \
#     libhwloc-dev libfabric1 libibverbs1 libibverbs-dev librdmacm1 libnl-3-200 \
#     libnl-route-3-200 libnl-3-dev libnl-route-3-dev libpsm-infinipath1 libpsm2-2 libucx0 \
#     libnuma1 libxnvctrl0 libltdl7
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
STAGES=${*:-build test}
has() { [[ " $STAGES " == *" $1 "* ]]; }
log() { echo "[gpu_run $(date +%T)] $*"; }

DEBS=$ROOT/.debs/root
if [ ! -d "$DEBS/usr" ]; then
  for f in .debs/*.deb; do dpkg -x "$f" "$DEBS"; done
fi
export CMAKE_PREFIX_PATH=$DEBS/usr
export PKG_CONFIG_LIBDIR=$DEBS/usr/lib/x86_64-linux-gnu/pkgconfig:$DEBS/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$DEBS
export LD_LIBRARY_PATH=$DEBS/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export PATH=$DEBS/usr/bin:/usr/local/cuda/bin:$PATH
BUILD=${BUILD:-$ROOT/build-gpu}  # BUILD=dir CMAKE_EXTRA=... builds an A/B variant beside it
# Open MPI, when its .deb files are carried in .mpi-debs/ (the mpi stage):
# unpacked like .debs and relocated with OPAL_PREFIX / PMIX_INSTALL_PREFIX.
MPI_DIR=$ROOT/.mpi-debs/root
MPI_ARGS=()
if ls "$ROOT"/.mpi-debs/*.deb > /dev/null 2>&1; then
  if [ ! -d "$MPI_DIR/usr" ]; then
    for f in "$ROOT"/.mpi-debs/*.deb; do dpkg -x "$f" "$MPI_DIR"; done
  fi
  export OPAL_PREFIX=$MPI_DIR/usr PMIX_INSTALL_PREFIX=$MPI_DIR/usr
  export LD_LIBRARY_PATH=$MPI_DIR/usr/lib/x86_64-linux-gnu:$MPI_DIR/usr/lib/x86_64-linux-gnu/openmpi/lib:$LD_LIBRARY_PATH
  MPI_ARGS=(-DMPI_C_COMPILER="$MPI_DIR/usr/bin/mpicc.openmpi")
fi

if has build; then
  log "configure + build"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  # NCCL: with the CUDA toolkit, else the one PyTorch's wheels bring.
  NCCL_ROOT=
  [ -f /usr/local/cuda/include/nccl.h ] || NCCL_ROOT=$(python3 -c \
    "import nvidia.nccl as n; print(list(n.__path__)[0])" 2>/dev/null)
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
    -DPKG_CONFIG_EXECUTABLE="$DEBS/usr/bin/pkgconf" ${NCCL_ROOT:+-DNCCL_ROOT=$NCCL_ROOT} "${MPI_ARGS[@]}" ${CMAKE_EXTRA:-} \
    > "$OUT/configure.log" 2>&1 ||
    { tail -30 "$OUT/configure.log"; exit 1; }
  grep -E "tsa: (NCCL|MPI)" "$OUT/configure.log"
  cmake --build "$BUILD" -j16 ${TARGETS:+--target $TARGETS} > "$OUT/build.log" 2>&1 ||
    { grep -E "error" -A3 "$OUT/build.log" | head -60; exit 1; }
  log "build ok"
fi

if has test; then
  log "GPU tests"
  ctest --test-dir "$BUILD" -L gpu ${TESTS:+-R "$TESTS"} --output-on-failure --timeout 180 -j4 \
    > "$OUT/gpu_tests.log" 2>&1
  tail -n 25 "$OUT/gpu_tests.log"
  if [ -z "${TESTS:-}" ]; then
    log "CPU tests (sanity on this machine)"
    # Two OpenMP threads per test: 16 tests at once with 16 threads each
    # oversubscribe the cores until small-matmul tests crawl.
    OMP_NUM_THREADS=2 ctest --test-dir "$BUILD" -LE gpu -j16 --timeout 120 > "$OUT/cpu_tests.log" 2>&1; tail -n 3 "$OUT/cpu_tests.log"
  fi
fi

if has sanitize; then
  # One memcheck per test binary, all at once (the GPU has room; memcheck is
  # mostly host-bound), each with its own log and exit status.
  log "compute-sanitizer memcheck"
  # Logs in one archive: a device call returns at most 8 files.
  MC=$(mktemp -d)
  for t in test_attention test_attention_paged test_elementwise test_sampling test_cuda_model \
           test_gate_up_swiglu test_tsa_select test_cuda_tsa test_cuda_batch; do
    [ -x "$BUILD/tests/$t" ] || continue
    ( timeout "${MEMCHECK_TIMEOUT:-400}" compute-sanitizer --tool memcheck --error-exitcode 9 \
        "$BUILD/tests/$t" --gtest_brief=1 > "$MC/$t.log" 2>&1
      echo "memcheck $t: exit $? ($(grep -c 'Invalid\|ERROR SUMMARY: [1-9]' "$MC/$t.log") findings," \
        "$(grep -o 'ERROR SUMMARY: [0-9]* errors' "$MC/$t.log" | tail -1))" ) &
  done
  wait
  tar -czf "$OUT/memcheck_logs.tar.gz" -C "$MC" .
fi

if has kernels; then
  log "attention kernels vs torch SDPA (same run), element-wise kernels, the fused MLP vs cuBLASLt"
  timeout 150 "$BUILD/bench/bench_attention" --json "$OUT/bench_attention.json" > "$OUT/bench_attention.txt" 2>&1
  timeout 150 python3 bench/sdpa_baseline.py --json "$OUT/sdpa.json" > "$OUT/sdpa.txt" 2>&1
  timeout 60 "$BUILD/bench/bench_elementwise" > "$OUT/bench_elementwise.txt" 2>&1
  timeout 120 "$BUILD/bench/bench_mlp" --lengths 256,512,1024,4096,16384 > "$OUT/bench_mlp.txt" 2>&1
  cat "$OUT/bench_attention.txt" "$OUT/sdpa.txt" "$OUT/bench_elementwise.txt" "$OUT/bench_mlp.txt"
fi

if has attn; then
  log "attention tests (sm80 and sm90 prefill kernels) and benchmark"
  timeout 120 "$BUILD/tests/test_attention" > "$OUT/test_attention.log" 2>&1
  echo "test_attention: exit $?"; grep -E "FAILED|PASSED" "$OUT/test_attention.log" | head -20
  timeout 120 "$BUILD/bench/bench_attention" --lengths 32768,131072 --contexts 1024 \
    --json "$OUT/bench_attention.json" > "$OUT/bench_attention.txt" 2>&1
  timeout 90 python3 bench/sdpa_baseline.py --lengths 32768,131072 --contexts 1024 \
    --backends cudnn --json "$OUT/sdpa.json" > "$OUT/sdpa.txt" 2>&1
  cat "$OUT/bench_attention.txt" "$OUT/sdpa.txt"
fi

if has tsa; then
  log "TSA selection + sparse attention vs dense (bench_tsa), the spec's algorithm in torch"
  timeout 120 "$BUILD/bench/bench_tsa" --json "$OUT/bench_tsa.json" > "$OUT/bench_tsa.txt" 2>&1
  for b in cudnn flash; do
    timeout 150 python3 bench/tsa_torch_baseline.py --backend $b --json "$OUT/tsa_torch_$b.json" \
      > "$OUT/tsa_torch_$b.txt" 2>&1
  done
  cat "$OUT/bench_tsa.txt" "$OUT"/tsa_torch_*.txt
fi

if has tsa-model; then
  log "whole model, dense and with TSA (layers 15-30): tau 0.005, forced keep 0.456 and 0.326"
  for keep in ${TSA_KEEPS:-dense 0 0.456 0.326}; do
    if [ "$keep" = dense ]; then args=(); else
      args=(--config configs/llama-3.1-8b-instruct.json --force-keep "$keep"); fi
    timeout 200 "$BUILD/tools/tsa-bench" -m bench/shapes/llama-3.1-8b --random "${args[@]}" \
      --prefill "${TSA_PREFILL:-32768,131072}" --decode-ctx 0 \
      --json "$OUT/tsa_bench_$keep.json" > "$OUT/tsa_bench_$keep.txt" 2>&1
    cat "$OUT/tsa_bench_$keep.txt"
  done
fi

if has ncu; then
  # Hardware counters of one dense and one sparse sm90 prefill launch (32K,
  # keep 0.456), to see what holds the sparse mode back
  # (bench/NOTES_attention_sm90.md).
  log "ncu: sm90 prefill, dense vs sparse"
  # -k matches the demangled name (the default base is the bare function name).
  for sparse in 0 1; do
    timeout 150 ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis \
      --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section SourceCounters \
      --kernel-name-base demangled -k "regex:prefill_sm90_kernel<.int.128, .bool.$sparse>" \
      --launch-count 1 "$BUILD/bench/bench_attention" --lengths 32768 --contexts 1024 \
      >> "$OUT/ncu_sm90.txt" 2>&1
    echo "ncu sparse=$sparse: exit $?"
  done
  grep -E "prefill_sm90|Duration|Throughput|Stall|Issued Warp|No Eligible|Hit Rate|Pipe" "$OUT/ncu_sm90.txt" | head -80
fi

if has ncu-source; then
  # Where the sm90 prefill kernel's warps stall, instruction by instruction
  # (PC sampling), sparse (keep 0.456) and dense at 32K.
  for sparse in 1 0; do
    log "ncu: stall samples per SASS instruction, sm90 prefill, sparse=$sparse"
    timeout 150 ncu -f -o "$OUT/ncu_src_$sparse" --section SourceCounters --section WarpStateStats \
      --kernel-name-base demangled -k "regex:prefill_sm90_kernel<.int.128, .bool.$sparse>" \
      --launch-count 1 "$BUILD/bench/bench_attention" --lengths 32768 --keep 0.456 --kernels sm90 \
      --contexts 1024 > "$OUT/ncu_src_$sparse.log" 2>&1
    ncu --import "$OUT/ncu_src_$sparse.ncu-rep" --page source --print-source sass --csv \
      > "$OUT/ncu_src_$sparse.csv" 2>> "$OUT/ncu_src_$sparse.log"
    echo "ncu source sparse=$sparse: exit $?"
    python3 bench/ncu_source_hot.py "$OUT/ncu_src_$sparse.csv" 25 || tail -5 "$OUT/ncu_src_$sparse.log"
  done
fi

if has ncu-decode; then
  # GPU time of each kernel of one decode step (ncu serializes the kernels,
  # so the sum leaves out launch gaps), next to the same step's wall time.
  log "ncu: kernels of one decode step, 8B shape, contexts ${NCU_DECODE_CTX:-1024 131072}"
  for ctx in ${NCU_DECODE_CTX:-1024 131072}; do
    bench_args=(-m bench/shapes/llama-3.1-8b --random --prefill 0 --decode-ctx "$ctx")
    "$BUILD/tools/tsa-bench" "${bench_args[@]}" | grep -E "^\| [0-9]"
    timeout 200 ncu --csv --metrics gpu__time_duration.sum --clock-control none \
      "$BUILD/tools/tsa-bench" "${bench_args[@]}" --decode-steps 4 > "$OUT/ncu_decode_$ctx.csv" 2> "$OUT/ncu_decode_$ctx.err"
    echo "ncu decode $ctx: exit $?"
    python3 bench/ncu_kernel_times.py "$OUT/ncu_decode_$ctx.csv" | head -24
  done
fi

if has ncu-prefill; then
  # GPU time of each prefill kernel (by name and grid: one GEMM shape each)
  # of an 8K prompt in 4096-row chunks, to see where the non-attention time goes.
  # --launch-count stops before the decode steps tsa-bench runs after the prompt.
  log "ncu: kernels of an 8K prefill, 8B shape"
  timeout 300 ncu --csv --metrics gpu__time_duration.sum --clock-control none --launch-count 1300 \
    "$BUILD/tools/tsa-bench" -m bench/shapes/llama-3.1-8b --random --prefill 8192 --decode-ctx 0 \
    > "$OUT/ncu_prefill.csv" 2> "$OUT/ncu_prefill.err"
  echo "ncu prefill: exit $?"
  python3 bench/ncu_kernel_times.py "$OUT/ncu_prefill.csv" --all | head -30
fi

if has tp70b; then
  # A model that needs two GPUs: Llama-3.1-70B shape (141 GB of bf16 weights, 71.6 GB per GPU),
  # random weights built on the GPUs, 128K prompt at TP=2, dense and with TSA
  # on the second half of the layers at the paper's 128K keep (0.456).
  log "70B shape at TP=2, 128K prompt: dense, then TSA (second half, keep 0.456)"
  : > "$OUT/tp70b.txt"
  for keep in dense 0.456; do
    if [ "$keep" = dense ]; then args=(); else
      args=(--config configs/default.json --force-keep "$keep"); fi
    timeout 280 "$BUILD/tools/tsa-bench" -m bench/shapes/llama-3.1-70b --random --tp 2 "${args[@]}" \
      --prefill "${TP70_PREFILL:-131072}" --decode-ctx "${TP70_DECODE:-131007}" >> "$OUT/tp70b.txt" 2>&1
    echo "tsa-bench 70b $keep: exit $?" | tee -a "$OUT/tp70b.txt"
  done
  cat "$OUT/tp70b.txt"
fi

if has model; then
  log "copy bandwidth (the decode bound), then the whole model: Llama-3.1-8B shape, random weights"
  python3 -c "
import torch
x = torch.empty(2**30, dtype=torch.uint8, device='cuda'); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(20): y.copy_(x)
e.record(); torch.cuda.synchronize()
print(f'device-to-device copy: {2 * 20 * 2**30 / (s.elapsed_time(e) * 1e-3) / 1e9:.0f} GB/s (read + write)')
" | tee "$OUT/copy_bandwidth.txt"
  # Power and SM clock while it runs (the long prefills run at the power cap).
  nvidia-smi --query-gpu=power.draw,clocks.sm,clocks_event_reasons.active \
    --format=csv,noheader,nounits -lms 200 > "$OUT/smi_model.csv" &
  SMI=$!
  timeout 300 "$BUILD/tools/tsa-bench" -m bench/shapes/llama-3.1-8b --random \
    --prefill 8192,32768,65536,131072 --decode-ctx 1024,32768,131072 \
    --json "$OUT/tsa_bench_8b.json" > "$OUT/tsa_bench_8b.txt" 2>&1
  kill $SMI
  cat "$OUT/tsa_bench_8b.txt"
  python3 bench/smi_power.py "$OUT/smi_model.csv"
fi

if has tp; then
  # Two files back: tp_tests.log (every test's output) and tp_bench.txt.
  log "tensor parallelism: TP=2 vs TP=1 tests, then tsa-bench TP=1 vs TP=2 (Llama-3.1-8B shape, random weights)"
  nvidia-smi -L
  : > "$OUT/tp_tests.log"
  for t in "test_tensor_parallel" "test_tsa_select_split" "test_tp_plan" \
           "test_cli --gtest_filter=*TensorParallel*"; do
    timeout 180 "$BUILD/tests/"$t >> "$OUT/tp_tests.log" 2>&1
    echo "$t: exit $?"
  done
  grep -E "^\[ (tp|split) \]|FAILED|PASSED|SKIPPED|Failure" "$OUT/tp_tests.log" | head -60
  : > "$OUT/tp_bench.txt"
  for cfg in dense tsa; do
    if [ "$cfg" = dense ]; then args=(); else args=(--config configs/llama-3.1-8b-instruct.json); fi
    for tp in 1 2; do
      echo "## tsa-bench $cfg --tp $tp" >> "$OUT/tp_bench.txt"
      timeout 240 "$BUILD/tools/tsa-bench" -m bench/shapes/llama-3.1-8b --random --tp $tp "${args[@]}" \
        --prefill "${TP_PREFILL:-32768,131072}" --decode-ctx "${TP_DECODE:-1024,32768}" \
        >> "$OUT/tp_bench.txt" 2>&1
      echo "tsa-bench $cfg --tp $tp: exit $?" | tee -a "$OUT/tp_bench.txt"
    done
  done
  cat "$OUT/tp_bench.txt"
fi

if has mpi; then
  # Ranks started by mpirun (2 GPUs): the same greedy tokens as one GPU and
  # as --tp 2 on a golden model, then tsa-bench under mpirun vs --tp 2.
  log "mpirun: 2 ranks vs --tp 2 vs one GPU"
  [ -x "$MPI_DIR/usr/bin/orterun" ] || { echo "mpi stage: carry .mpi-debs (Open MPI .debs)"; exit 1; }
  MPIRUN=("$MPI_DIR/usr/bin/mpirun.openmpi" --allow-run-as-root -np 2)
  args=(-m tests/fixtures/golden/llama-gqa-llama3rope -p "Hello world" -n 8 --temp 0 --ignore-eos
        --json --device cuda)
  # The one JSON object tsa-infer --json prints (rank 0 only under mpirun).
  ids() { python3 -c 'import json, sys; t = sys.stdin.read(); print(json.loads(t[t.find("{"):])["ids"])'; }
  one=$("$BUILD/tools/tsa-infer" "${args[@]}" 2> "$OUT/mpi_one.err" | ids)
  tp2=$("$BUILD/tools/tsa-infer" "${args[@]}" --tp 2 2> "$OUT/mpi_tp2.err" | ids)
  mpi=$("${MPIRUN[@]}" "$BUILD/tools/tsa-infer" "${args[@]}" 2> "$OUT/mpi_mpirun.err" | ids)
  echo "one GPU: $one"; echo "--tp 2:  $tp2"; echo "mpirun:  $mpi"
  [ -n "$one" ] && [ "$one" = "$tp2" ] && [ "$one" = "$mpi" ] && echo "mpirun tokens: SAME" ||
    { echo "mpirun tokens: DIFFER"; tail -n 5 "$OUT"/mpi_*.err; }
  for how in "--tp 2" mpirun; do
    if [ "$how" = mpirun ]; then pre=("${MPIRUN[@]}"); tp=(); else pre=(); tp=(--tp 2); fi
    echo "## tsa-bench 8B shape, $how"
    timeout 200 "${pre[@]}" "$BUILD/tools/tsa-bench" -m bench/shapes/llama-3.1-8b --random "${tp[@]}" \
      --prefill "${TP_PREFILL:-32768}" --decode-ctx 1024 2>&1 | grep -E "^\| [0-9]|rank|error"
  done
fi

