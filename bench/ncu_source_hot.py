"""The SASS instructions where a kernel's warps stall most, from ncu's source page.

    ncu -o rep --section SourceCounters -k regex:NAME --launch-count 1 PROGRAM ...
    ncu --import rep.ncu-rep --page source --print-source sass --csv > src.csv
    python3 bench/ncu_source_hot.py src.csv [N]

Prints the warp instructions executed per HGMMA (the work besides the
MMAs), the N (default 30) instructions with the most warp-stall samples, and
the samples summed by opcode and by stall reason: which waits (barriers,
memory, MMA) hold the kernel's warps.
"""
import collections
import csv
import sys


def number(text):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return 0.0


def main(path, top):
    with open(path) as f:
        lines = [l for l in f if l.startswith('"')]
    # A "Kernel Name" line precedes the header row.
    lines = lines[next((i for i, l in enumerate(lines) if l.startswith('"Address"')), 0):]
    rows = list(csv.DictReader(lines))
    if not rows:
        sys.exit(f"{path}: no CSV rows")
    cols = list(rows[0].keys())
    stall = next((c for c in cols if c.startswith("Warp Stall Sampling (All")), None)
    source = next((c for c in cols if c == "Source"), None)
    addr = next((c for c in cols if c == "Address"), None)
    if stall is None or source is None:
        sys.exit(f"{path}: columns {cols}")
    total = sum(number(r[stall]) for r in rows)
    executed = "Instructions Executed"
    if executed in cols:
        # Work per tensor-core instruction: what the kernel issues besides its MMAs.
        warp_instr = sum(number(r[executed]) for r in rows)
        mma = sum(number(r[executed]) for r in rows if "GMMA" in r[source])
        if mma:
            print(f"{warp_instr:.4g} warp instructions executed, {warp_instr / mma:.1f} per HGMMA")
    print(f"{len(rows)} instructions, {total:.0f} stall samples")
    by_op = collections.Counter()
    for r in rows:
        by_op[r[source].split()[0] if r[source].split() else "?"] += number(r[stall])
    print("| opcode | samples | share |\n| --- | ---: | ---: |")
    for op, n in by_op.most_common(15):
        print(f"| {op} | {n:.0f} | {100 * n / total:.1f}% |")
    reasons = [c for c in cols if c.startswith("stall_") and "(Not Issued)" not in c]
    by_reason = collections.Counter()
    for r in rows:
        for c in reasons:
            by_reason[c] += number(r[c])
    print("\n| stall reason | samples | share |\n| --- | ---: | ---: |")
    for c, n in by_reason.most_common(10):
        print(f"| {c} | {n:.0f} | {100 * n / total:.1f}% |")
    print("\n| address | instruction | samples | share | main reasons |\n| --- | --- | ---: | ---: | --- |")
    for r in sorted(rows, key=lambda r: -number(r[stall]))[:top]:
        n = number(r[stall])
        main = sorted(reasons, key=lambda c: -number(r[c]))[:2]
        why = ", ".join(f"{c[6:]} {number(r[c]):.0f}" for c in main if number(r[c]) > 0)
        print(f"| {r.get(addr, '')[-5:]} | {r[source].strip()[:58]} | {n:.0f} | {100 * n / total:.1f}% | {why} |")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30)
