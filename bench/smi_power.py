#!/usr/bin/env python3
"""Summarises an nvidia-smi log written during a benchmark, to tell whether
the GPU ran at its power cap (the 128K prefill does: docs/PERFORMANCE.md).

    nvidia-smi --query-gpu=power.draw,clocks.sm,clocks_event_reasons.active \
        --format=csv,noheader,nounits -lms 200 > smi.csv &
    ... benchmark ...; kill %1
    python3 bench/smi_power.py smi.csv

Only samples above --busy-watts count (the idle gaps between runs would
pull the medians down). Bit 0x4 of the reasons is the software power cap.
"""
import argparse
import statistics


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--busy-watts", type=float, default=250.0)
    args = ap.parse_args()
    busy = []
    for line in open(args.log):
        f = [x.strip() for x in line.split(",")]
        try:
            watts, mhz, reasons = float(f[0]), float(f[1]), int(f[2], 16)
        except (IndexError, ValueError):
            continue  # a header or a sample cut off by the kill
        if watts > args.busy_watts:
            busy.append((watts, mhz, reasons))
    if not busy:
        print(f"{args.log}: no samples above {args.busy_watts:.0f} W")
        return
    capped = sum(1 for b in busy if b[2] & 0x4) / len(busy)
    print(f"{len(busy)} busy samples: power median {statistics.median(b[0] for b in busy):.0f} W, "
          f"SM clock median {statistics.median(b[1] for b in busy):.0f} MHz, "
          f"at the power cap {capped:.0%}")


if __name__ == "__main__":
    main()
