"""Draws the chart of bench/run.py (run with the peers' venv, matplotlib):

    python plot.py DATA.json OUT.png

One panel per scenario, one horizontal bar per server: server CPU time per
request in microseconds (log scale; shorter is better).
"""
import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

HIGHLIGHT = {"lichen": "#2a7a2a", "lichen-gevent": "#6cb36c",
             "c-ref": "#444444"}


def main(src, out):
    with open(src) as f:
        data = json.load(f)
    scenarios = [s for s in data["scenarios"] if data["cpu_us"].get(s)]
    servers = data["servers"]
    if not scenarios:
        sys.exit("nothing to draw")
    cols = 3 if len(scenarios) > 4 else len(scenarios)
    rows = math.ceil(len(scenarios) / cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False,
                             figsize=(5.2 * cols, 0.28 * len(servers) * rows
                                      + 1.2 * rows + 0.8))
    for ax in axes.flat[len(scenarios):]:
        ax.axis("off")
    for ax, scn in zip(axes.flat, scenarios):
        vals = data["cpu_us"][scn]
        names = [n for n in servers if n in vals]
        ys = range(len(names))
        ax.barh(ys, [vals[n] for n in names],
                color=[HIGHLIGHT.get(n, "#7a9cc6") for n in names])
        ax.set_yticks(list(ys))
        ax.set_yticklabels(names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        for y, n in zip(ys, names):
            ax.text(vals[n], y, " %.1f" % vals[n], va="center", fontsize=7)
        ax.set_title(scn, fontsize=10, loc="left")
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel("server CPU us / request (log)", fontsize=8)
        lo, hi = min(vals.values()), max(vals.values())
        ax.set_xlim(lo / 1.6, hi * 3)
    fig.suptitle("Server CPU time per request (shorter is better)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
