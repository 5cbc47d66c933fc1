"""Per-kernel GPU time from ncu's CSV: one decode step, or a whole range.

    ncu --csv --metrics gpu__time_duration.sum --clock-control none \
        tsa-bench ... --prefill 0 --decode-ctx C --decode-steps 4 > ncu.csv
    python3 bench/ncu_kernel_times.py ncu.csv          # the last whole decode step
    python3 bench/ncu_kernel_times.py ncu.csv --all    # every kernel, by name and grid

A step starts at its embedding kernel; the last complete step is shown:
kernel count, the sum of kernel durations (compare with the step's wall time
from tsa-bench: the difference is launch gaps), and the kernels by total time.
--all groups every kernel but the random weight fills by (name, grid), e.g.
to read each prefill GEMM shape's time.
"""
import collections
import csv
import sys


def short(name):
    # "void tsa::<unnamed>::rope_kernel<8>(...)" -> "rope_kernel<8>"
    return name.split("(")[0].removeprefix("void ").split("::")[-1][:70]


def by_name_and_grid(rows):
    by = collections.defaultdict(lambda: [0, 0.0])
    for name, us, grid in rows:
        if "random_fill" in name:
            continue
        by[(short(name), grid)][0] += 1
        by[(short(name), grid)][1] += us
    total = sum(us for n, us in by.values())
    print(f"{sum(n for n, _ in by.values())} kernels, {total / 1e3:.3f} ms of kernel time")
    print("| kernel | grid | launches | mean us | total ms |\n| --- | --- | ---: | ---: | ---: |")
    for (key, grid), (n, us) in sorted(by.items(), key=lambda kv: -kv[1][1]):
        print(f"| {key} | {grid} | {n} | {us / n:.1f} | {us / 1e3:.2f} |")


def main(path, everything):
    rows = []
    with open(path) as f:
        lines = [l for l in f if l.startswith('"')]
    for r in csv.DictReader(lines):
        if r.get("Metric Name") == "gpu__time_duration.sum":
            unit = r.get("Metric Unit", "ns")
            scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3}[unit]
            rows.append((r["Kernel Name"], float(r["Metric Value"].replace(",", "")) * scale,
                         r["Grid Size"]))
    if everything:
        return by_name_and_grid(rows)
    starts = [i for i, (name, _, _) in enumerate(rows) if "embed_kernel" in name]
    if len(starts) < 2:
        sys.exit(f"{path}: fewer than two decode steps found ({len(rows)} kernels)")
    step = rows[starts[-2]:starts[-1]]
    total = sum(us for _, us, _ in step)
    by = collections.defaultdict(lambda: [0, 0.0])
    for name, us, _ in step:
        key = short(name)
        by[key][0] += 1
        by[key][1] += us
    print(f"one decode step: {len(step)} kernels, {total / 1e3:.3f} ms of kernel time")
    print("| kernel | launches | us | share |\n| --- | ---: | ---: | ---: |")
    for key, (n, us) in sorted(by.items(), key=lambda kv: -kv[1][1]):
        print(f"| {key} | {n} | {us:.1f} | {100 * us / total:.1f}% |")


if __name__ == "__main__":
    main(sys.argv[1], "--all" in sys.argv[2:])
