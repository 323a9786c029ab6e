"""Evaluation plots: PR curves per class (from COCOeval at IoU 0.5) and the confusion matrix."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from pycocotools.cocoeval import COCOeval

from detect.metrics.coco import pr_curve


def plot_pr_curves(evaluator: COCOeval, names: dict[int, str], path: Path, title: str) -> None:
    """One precision-recall curve per category (IoU 0.5, all areas, 100 detections) into
    ``path`` (PNG), each labelled with its AP50."""
    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=110)
    for category, name in names.items():
        recall, precision = pr_curve(evaluator, category)
        k = list(evaluator.params.catIds).index(category)
        raw = evaluator.eval["precision"][0, :, k, 0, -1]
        ap50 = float(raw[raw > -1].mean()) if (raw > -1).any() else -1.0
        label = f"{name} (AP50 {ap50:.3f})" if ap50 >= 0 else f"{name} (no ground truth)"
        ax.plot(recall, precision, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, names: list[str], path: Path, title: str) -> None:
    """The ``(K+1, K+1)`` confusion matrix (rows true, columns predicted, last = background),
    counts in the cells, colour normalised per true class."""
    labels = [*names, "background"]
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    side = 1.2 + 0.55 * len(labels)
    fig, ax = plt.subplots(figsize=(side + 1.5, side), dpi=110)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            color = "white" if shares[i, j] > 0.6 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
