#!/usr/bin/env python3
"""PyTorch baseline for bench/bench_tsa.cu: the same rows, the same table.

Token Sparse Attention as ../shared/TSA_SPEC.md states it, in plain PyTorch
the way the authors' reference runs it, at H=32, Hkv=8, D=128, window 128,
min_tokens 1024, kernel_size 7, on random bf16 inputs, timed with CUDA events
(warm-up, median of repeats):
  dense   causal SDPA over L tokens (GQA native)
  select  the last W queries' scores (one matmul per KV group, fp32 softmax
          with causal masking inside the window, mean over the window),
          avg_pool1d, per-head and global normalisation, sort + cumsum < tau
          (a host sync for n_drop, as the reference has), top-k per head,
          sort, window appended; "_forced" rows keep a fixed share instead
          (no sort, no sync)
  sparse  gather Q/K/V per head at its indices (K/V through the GQA group,
          no expanded copies), causal SDPA on the k + W rows, scatter into a
          zeroed output
  tsa     select + sparse
"vs dense" = ms / dense ms at the same L.

  python3 bench/tsa_torch_baseline.py [--lengths 32768,65536,131072]
      [--keep 0.456,0.326] [--tau 0.005] [--repeats 5] [--backend cudnn|flash]
      [--json out.json]
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

from torch_bench_common import BACKENDS, D, H, HKV, float_list, gqa_call, int_list, time_ms

W, MIN_TOKENS, KS = 128, 1024, 7


def select(q, k, tau, force):
    """Per-head sorted index lists [H, keep + W], or None when nothing is dropped."""
    L = q.shape[2]
    P = L - W
    group = H // HKV
    # Window queries grouped by KV head: (HKV, group * W, D) x (HKV, D, L).
    qw = q[0, :, P:, :].reshape(HKV, group * W, D)
    logits = torch.matmul(qw, k[0].transpose(1, 2)).float().view(H, W, L) * D ** -0.5
    causal = torch.ones(W, W, dtype=torch.bool, device=q.device).triu(1)  # key after query
    logits[:, :, P:].masked_fill_(causal, float("-inf"))
    s = torch.softmax(logits, dim=-1)[:, :, :P].mean(dim=1)  # (H, P)
    s = F.avg_pool1d(s.unsqueeze(0), KS, stride=1, padding=KS // 2,
                     count_include_pad=True).squeeze(0)
    p = s / (s.sum(dim=-1, keepdim=True) + 1e-8)
    if force > 0:
        keep = min(P, max(0, round(force * P)))
    else:
        g = s.mean(dim=0)
        g = g / (g.sum() + 1e-8)
        cum = torch.cumsum(torch.sort(g).values, dim=0)
        n_drop = int((cum < tau).sum().item())  # host sync, as the reference
        if n_drop == 0:
            return None
        keep = max(MIN_TOKENS, P - (n_drop + 1))
    idx = torch.topk(p, keep, dim=-1).indices.sort(dim=-1).values
    window = torch.arange(P, L, device=q.device, dtype=idx.dtype).expand(H, W)
    return torch.cat([idx, window], dim=-1)


def sparse(q, k, v, idx):
    """Gather -> causal SDPA on each head's rows -> scatter into zeros."""
    heads = torch.arange(H, device=q.device)[:, None]
    kv_heads = heads // (H // HKV)
    qg = q[0][heads, idx]
    kg = k[0][kv_heads, idx]
    vg = v[0][kv_heads, idx]
    out = F.scaled_dot_product_attention(qg[None], kg[None], vg[None], is_causal=True)
    full = torch.zeros_like(q)
    full[0][heads, idx] = out[0]
    return full


def dense_call(q, k, v):
    """Causal GQA SDPA; K/V repeated per head (outside the timing) if the backend refuses GQA."""
    def call(kk, vv, gqa):
        return F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=gqa)

    return gqa_call(call, q, k, v)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="32768,65536,131072")
    ap.add_argument("--keep", default="0.456,0.326")
    ap.add_argument("--tau", type=float, default=0.005)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", default="cudnn", choices=sorted(BACKENDS))
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("tsa_torch_baseline: no CUDA device", file=sys.stderr)
        return 1
    lengths = int_list(args.lengths)
    keeps = float_list(args.keep)
    dev = torch.device("cuda")
    torch.manual_seed(0)
    half = max(1, args.repeats // 2)
    rows = []
    with sdpa_kernel([BACKENDS[args.backend]]):
        for L in lengths:
            P = L - W
            q = torch.randn(1, H, L, D, device=dev, dtype=torch.bfloat16)
            k = torch.randn(1, HKV, L, D, device=dev, dtype=torch.bfloat16)
            v = torch.randn(1, HKV, L, D, device=dev, dtype=torch.bfloat16)

            dense_fn = dense_call(q, k, v)
            dense = time_ms(dense_fn, 1, half)
            rows.append({"kind": "dense", "L": L, "keep": 1.0, "ms": dense, "vs_dense": 1.0})
            for f in [0.0] + keeps:
                tag = "" if f == 0 else "_forced"
                sel_ms = time_ms(lambda: select(q, k, args.tau, f), 1, args.repeats)
                idx = select(q, k, args.tau, f)
                if idx is None:  # nothing dropped: the layer is dense
                    rows.append({"kind": "select" + tag, "L": L, "keep": 1.0, "ms": sel_ms,
                                 "vs_dense": sel_ms / dense})
                    continue
                kept = (idx.shape[1] - W) / P
                sp_ms = time_ms(lambda: sparse(q, k, v, idx), 1, half)
                tot_ms = time_ms(lambda: sparse(q, k, v, select(q, k, args.tau, f)), 1, half)
                for kind, ms in (("select", sel_ms), ("sparse", sp_ms), ("tsa", tot_ms)):
                    rows.append({"kind": kind + tag, "L": L, "keep": kept, "ms": ms,
                                 "vs_dense": ms / dense})
                del idx
            del q, k, v
            torch.cuda.empty_cache()

    print(f"torch TSA ({args.backend} SDPA) on {torch.cuda.get_device_name()} "
          f"(H={H} Hkv={HKV} D={D}, W={W}, tau={args.tau:g})")
    print(f"{'kind':14} {'L':>8} {'keep':>6} {'ms':>10} {'vs dense':>9}")
    for r in rows:
        print(f"{r['kind']:14} {r['L']:8d} {r['keep']:6.3f} {r['ms']:10.3f} {r['vs_dense']:9.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": "torch-" + args.backend, "device": torch.cuda.get_device_name(),
                       "tau": args.tau, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
