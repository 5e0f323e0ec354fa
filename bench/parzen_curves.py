"""Plot and tabulate the Parzen curves that `reproduce_mnist.py` logs, one curve per run.

    python bench/parzen_curves.py uniform=runs/mnist_paper/parzen.jsonl gaussian=runs/mnist_gaussian_s0/parzen.jsonl \
        --png bench/results/mnist_parzen_curves.png

Prints a Markdown table (one column per run, "mean ± s.e. (σ)"; one row per evaluated epoch, or with `--every N` the
multiples of N, the epochs in `--also` and each run's last epoch) and writes the PNG with the paper's 225 nats and the
real-training-images ceiling drawn as horizontal lines.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PAPER_MNIST = 225.0


def read_curve(path: Path) -> dict[int, dict]:
    """epoch -> evaluation record; a later line for the same epoch (a resumed run) replaces the earlier one."""
    curve: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            curve[int(record["epoch"])] = record
    return curve


def markdown_table(curves: dict[str, dict[int, dict]], every: int = 0, also: frozenset[int] = frozenset()) -> str:
    """Rows for every evaluated epoch, or (every > 0) for multiples of `every`, `also` and each run's last epoch."""
    epochs = sorted({epoch for curve in curves.values() for epoch in curve})
    if every > 0:
        last = {max(curve) for curve in curves.values() if curve}
        epochs = [e for e in epochs if e % every == 0 or e in also or e in last]
    lines = ["| epoch | " + " | ".join(curves) + " |", "|---:|" + "---:|" * len(curves)]
    for epoch in epochs:
        cells = []
        for curve in curves.values():
            record = curve.get(epoch)
            cells.append(
                f"{record['mean_log_likelihood']:.1f} ± {record['standard_error']:.1f} ({record['sigma']:.3f})"
                if record
                else ""
            )
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(curves: dict[str, dict[int, dict]], png: Path, ceiling: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, curve in curves.items():
        epochs = sorted(curve)
        ax.plot(epochs, [curve[e]["mean_log_likelihood"] for e in epochs], marker=".", label=name)
    ax.axhline(PAPER_MNIST, color="k", linestyle="--", linewidth=1, label="paper (225)")
    if ceiling is not None:
        ax.axhline(ceiling, color="grey", linestyle=":", linewidth=1, label=f"real training images ({ceiling:.0f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Parzen test log-likelihood (nats)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(png.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="label=path/to/parzen.jsonl")
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--every", type=int, default=0, help="table rows at multiples of N only (0 = all)")
    parser.add_argument("--also", default="", help="comma-separated extra epochs for the table with --every")
    parser.add_argument("--ceiling", type=float, default=241.2, help="real training images' score, drawn for scale")
    args = parser.parse_args()
    curves = {}
    for spec in args.runs:
        label, sep, path = spec.partition("=")
        if not sep:
            parser.error(f"expected label=path, got {spec!r}")
        curves[label] = read_curve(Path(path))
    also = frozenset(int(e) for e in args.also.split(",") if e.strip())
    print(markdown_table(curves, args.every, also))
    if args.png:
        plot(curves, args.png, args.ceiling)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
