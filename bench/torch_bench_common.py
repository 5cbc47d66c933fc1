"""What the torch baselines sdpa_baseline.py and tsa_torch_baseline.py share:
the shape (H=32, Hkv=8, D=128, as bench_attention.cu and bench_tsa.cu), the
SDPA backends by name, CUDA-event timing, comma lists, and GQA through SDPA
for backends that may refuse it.

The scripts run as `python3 bench/<script>.py`, which puts bench/ first on
sys.path, so they import this module by its bare name.
"""
import torch
from torch.nn.attention import SDPBackend

H, HKV, D = 32, 8, 128
BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}


def time_ms(fn, warmup, repeats):
    """Median milliseconds of `repeats` CUDA-event timed calls of fn, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def int_list(s):
    """"a,b,c" -> [a, b, c] as ints."""
    return [int(x) for x in s.split(",") if x]


def float_list(s):
    """"a,b,c" -> [a, b, c] as floats."""
    return [float(x) for x in s.split(",") if x]


def gqa_call(call, q, k, v):
    """A closure for timing call(k, v, gqa) (SDPA of q over these K/V; gqa is
    its enable_gqa), and how GQA was handled: "none" (as many K/V heads as
    query heads), "native" (the backend takes enable_gqa) or "repeat" (K/V
    repeated per query head here, outside the timed closure). The chosen form
    runs once before it is returned."""
    if k.shape[1] == q.shape[1]:
        call(k, v, False)
        return (lambda: call(k, v, False)), "none"
    try:
        call(k, v, True)
        torch.cuda.synchronize()
        return (lambda: call(k, v, True)), "native"
    except RuntimeError:
        rep = q.shape[1] // k.shape[1]
        kr = k.repeat_interleave(rep, dim=1)
        vr = v.repeat_interleave(rep, dim=1)
        call(kr, vr, False)
        return (lambda: call(kr, vr, False)), "repeat"
