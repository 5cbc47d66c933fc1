"""Per-kernel GPU time of one decode step, from ncu's CSV.

    ncu --csv --metrics gpu__time_duration.sum --clock-control none \
        tsa-bench ... --prefill 0 --decode-ctx C --decode-steps 4 > ncu.csv
    python3 bench/decode_kernels.py ncu.csv

A step starts at its embedding kernel; the last complete step is shown:
kernel count, the sum of kernel durations (compare with the step's wall time
from tsa-bench: the difference is launch gaps), and the kernels by total time.
"""
import collections
import csv
import sys


def main(path):
    rows = []
    with open(path) as f:
        lines = [l for l in f if l.startswith('"')]
    for r in csv.DictReader(lines):
        if r.get("Metric Name") == "gpu__time_duration.sum":
            unit = r.get("Metric Unit", "nsecond")
            scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(unit, 1e-3)
            rows.append((r["Kernel Name"], float(r["Metric Value"].replace(",", "")) * scale))
    starts = [i for i, (name, _) in enumerate(rows) if name.startswith("embed_kernel")]
    if len(starts) < 2:
        sys.exit(f"{path}: fewer than two decode steps found ({len(rows)} kernels)")
    step = rows[starts[-2]:starts[-1]]
    total = sum(us for _, us in step)
    by = collections.defaultdict(lambda: [0, 0.0])
    for name, us in step:
        key = name.split("(")[0][:70]
        by[key][0] += 1
        by[key][1] += us
    print(f"one decode step: {len(step)} kernels, {total / 1e3:.3f} ms of kernel time")
    print("| kernel | launches | us | share |\n| --- | ---: | ---: | ---: |")
    for key, (n, us) in sorted(by.items(), key=lambda kv: -kv[1][1]):
        print(f"| {key} | {n} | {us:.1f} | {100 * us / total:.1f}% |")


if __name__ == "__main__":
    main(sys.argv[1])
