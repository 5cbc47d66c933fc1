#!/usr/bin/env python3
"""torch SDPA baseline for bench/bench_attention.cu: the same rows, same table.

Times torch.nn.functional.scaled_dot_product_attention with the cuDNN and the
flash backends (CUDA events, warm-up, median of repeats, random bf16 inputs)
at H=32, Hkv=8, D=128:
  prefill_dense   causal prefill of L tokens        FLOPs = 4 * L^2 * D * H / 2
  prefill_sparse  dense causal attention on n_sel = keep * L tokens with one
                  K/V per query head (what gathered Token Sparse Attention
                  runs; the gather and scatter copies are not timed)
  decode          1 query against a cache of ctx     bytes = 4 * ctx * Hkv * D
GQA uses enable_gqa when the backend takes it, else K/V repeated per head
(reported in the "gqa" field; repeating is done outside the timed region).

  python3 bench/sdpa_baseline.py [--lengths 8192,32768] [--keep 0.456,0.326]
                                 [--contexts 1024,32768,131072] [--repeats 10]
                                 [--backends cudnn,flash] [--json out.json]
The table goes to stdout; --json also writes the rows to a file.
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

from torch_bench_common import BACKENDS, D, H, HKV, float_list, gqa_call, int_list, time_ms


def make_call(backend, q, k, v, causal):
    """A timed closure and how GQA was handled ("native", "repeat" or "none")."""
    def call(kk, vv, gqa):
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, kk, vv, is_causal=causal, enable_gqa=gqa)

    return gqa_call(call, q, k, v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="8192,32768,65536,131072")
    ap.add_argument("--keep", default="0.456,0.326")
    ap.add_argument("--contexts", default="1024,32768,131072")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--backends", default="cudnn,flash")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("sdpa_baseline: no CUDA device", file=sys.stderr)
        return 1
    lengths = int_list(args.lengths)
    keeps = float_list(args.keep)
    contexts = int_list(args.contexts)
    dev = torch.device("cuda")
    torch.manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, device=dev, dtype=torch.bfloat16)

    rows = []
    for name in args.backends.split(","):
        backend = BACKENDS[name]

        def run(kind, L, keep, n, heads_kv, causal, n_q, flops, nbytes):
            q = rand(1, H, n_q, D)
            k = rand(1, heads_kv, n, D)
            v = rand(1, heads_kv, n, D)
            row = {"backend": name, "kind": kind, "L": L, "keep": keep}
            try:
                fn, gqa = make_call(backend, q, k, v, causal)
                reps = max(1, args.repeats // 2) if n >= 65536 else args.repeats
                if kind == "decode":
                    reps = 5 * args.repeats
                ms = time_ms(fn, 2 if kind != "decode" else 5, reps)
                row.update(ms=ms, tflops=flops / ms * 1e-9, gbps=nbytes / ms * 1e-6, gqa=gqa)
            except RuntimeError as e:  # backend refuses the shape or runs out of memory
                row.update(ms=None, tflops=None, gbps=None, error=str(e).split("\n")[0])
            del q, k, v
            torch.cuda.empty_cache()
            rows.append(row)

        for L in lengths:
            run("prefill_dense", L, 1.0, L, HKV, True, L, 4.0 * L * L * D * H / 2, 0.0)
            for keep in keeps:
                n_sel = max(1, min(L, int(keep * L)))
                run("prefill_sparse", L, keep, n_sel, H, True, n_sel,
                    4.0 * n_sel * n_sel * D * H / 2, 0.0)
        for ctx in contexts:
            run("decode", ctx, 1.0, ctx, HKV, False, 1, 4.0 * ctx * D * H,
                2.0 * ctx * HKV * D * 2)

    print(f"torch SDPA on {torch.cuda.get_device_name()} (H={H} Hkv={HKV} D={D})")
    print(f"{'backend':8} {'kind':16} {'L':>8} {'keep':>6} {'ms':>10} {'TFLOP/s':>9} "
          f"{'GB/s':>8}  gqa")
    for r in rows:
        if r["ms"] is None:
            print(f"{r['backend']:8} {r['kind']:16} {r['L']:8d} {r['keep']:6.3f}  "
                  f"failed: {r['error']}")
            continue
        print(f"{r['backend']:8} {r['kind']:16} {r['L']:8d} {r['keep']:6.3f} {r['ms']:10.4f} "
              f"{r['tflops']:9.1f} {r['gbps']:8.1f}  {r['gqa']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": "sdpa", "device": torch.cuda.get_device_name(),
                       "H": H, "Hkv": HKV, "D": D, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
