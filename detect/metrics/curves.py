"""Training curves from `metrics.csv`: `loss.png` (losses per epoch) and `val_ap.png`."""

from __future__ import annotations

import csv
from pathlib import Path


def _column(rows: list[dict[str, str]], name: str) -> tuple[list[int], list[float]]:
    epochs, values = [], []
    for row in rows:
        if row.get(name):
            epochs.append(int(row["epoch"]))
            values.append(float(row[name]))
    return epochs, values


def plot_training_curves(metrics_csv: Path, out_dir: Path) -> list[Path]:
    """Write loss.png (every `loss*` column) and val_ap.png (every `val_*` column)."""
    import matplotlib  # slow to import: only when a run plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    columns = list(rows[0].keys())
    written = []
    for filename, prefix, title, ylabel in (
        ("loss.png", "loss", "Training loss", "loss (mean over epoch)"),
        ("val_ap.png", "val_", "Validation AP (COCO)", "AP"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
        for name in (c for c in columns if c.startswith(prefix)):
            epochs, values = _column(rows, name)
            if values:
                ax.plot(epochs, values, marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        path = Path(out_dir) / filename
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
