#!/usr/bin/python3
"""Plots percentile curves from HdrHistogram .hgrm files to a PNG.

    bench/plot.py [--title T] [--out chart.png] [LABEL=]FILE.hgrm ...

Each file (as written by `shmbus bench --hgrm` or bench/peers/run) becomes one
curve: latency (microseconds, log scale) against percentile, spaced by
1/(1-percentile) so that the tail (99%, 99.9%, 99.99%) gets as much room as
the median. A curve is labelled LABEL, or the file name without .hgrm.

Needs matplotlib (Debian: python3-matplotlib). Without it the script says so
and exits 3 without writing anything. Exit 2: bad arguments or a file that is
not in the .hgrm layout.
"""

import argparse
import math
import os
import sys


def read_hgrm(path):
    """Returns [(percentile, value_us)] from the rows of an .hgrm file."""
    points = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts or line.startswith("#") or parts[0] == "Value":
                continue
            try:
                points.append((float(parts[1]), float(parts[0])))
            except (ValueError, IndexError):
                raise SystemExit(f"plot.py: {path}:{n}: not an .hgrm row: {line.strip()!r}") from None
    if not points:
        raise SystemExit(f"plot.py: {path}: no percentile rows")
    return points


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", metavar="[LABEL=]FILE")
    ap.add_argument("--out", default="latency.png", help="PNG to write (default latency.png)")
    ap.add_argument("--title", default="Latency by percentile")
    args = ap.parse_args()
    curves = []
    for spec in args.files:
        label, sep, path = spec.partition("=")
        if not sep:
            label, path = os.path.basename(spec).removesuffix(".hgrm"), spec
        try:
            curves.append((label, read_hgrm(path)))
        except OSError as e:
            print(f"plot.py: {e}", file=sys.stderr)
            return 2
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot.py: matplotlib is not installed (Debian: apt-get install python3-matplotlib); "
              f"no chart written to {args.out}", file=sys.stderr)
        return 3
    fig, ax = plt.subplots(figsize=(10, 6))
    top = 10.0
    for label, points in curves:
        # The 100% row (the maximum) is at infinity on this axis: it goes into the label.
        rows = [(p, v) for p, v in points if p < 1]
        xs = [1 / (1 - p) for p, _ in rows]
        ax.plot(xs, [v for _, v in rows], label=f"{label} (max {points[-1][1]:g} µs)",
                linewidth=1.5)
        top = max(top, max(xs, default=1))
    ticks = [10 ** k for k in range(0, int(math.log10(top)) + 1)]
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{100 * (1 - 1 / t):g}%" for t in ticks])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (µs)")
    ax.set_title(args.title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
