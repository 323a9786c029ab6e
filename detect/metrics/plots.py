"""Evaluation plots: PR curves per class (from COCOeval at IoU 0.5) and the confusion matrix.

`Plotter` draws them in a helper process that imports matplotlib while the caller is still
running COCOeval, so on a machine with a spare core the report costs almost no extra wall time.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
from pycocotools.cocoeval import COCOeval

from detect.errors import DetectError


def pr_curves(evaluator: COCOeval, names: dict[int, str]) -> dict[str, np.ndarray]:
    """``{"recall": (101,), name: (101,) precision, ...}`` at IoU 0.5, all areas, 100
    detections, as COCOeval interpolates them (-1 where a class has no ground truth)."""
    precision = evaluator.eval["precision"][0, :, :, 0, -1]  # (R recall, K category)
    curves = {"recall": np.asarray(evaluator.params.recThrs)}
    for k, category in enumerate(evaluator.params.catIds):
        curves[names[int(category)]] = np.asarray(precision[:, k])
    return curves


def plot_pr_curves(curves: dict[str, np.ndarray], path: Path, title: str) -> None:
    """One precision-recall curve per class (from `pr_curves`) into ``path`` (PNG), each
    labelled with its AP50."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=110)
    recall = curves["recall"]
    for name, precision in curves.items():
        if name == "recall":
            continue
        valid = precision > -1
        if valid.any():
            label = f"{name} (AP50 {precision[valid].mean():.3f})"
        else:
            label = f"{name} (no ground truth)"
        ax.plot(recall, np.clip(precision, 0, None), label=label)
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def _warm_up() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot


class Plotter:
    """Plots drawn in one helper process (spawned, so no state of the caller is shared).

    `draw` queues a plot; `finish` waits for all of them and raises `DetectError` if one failed.
    """

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self._jobs: list[tuple[Path, Future]] = [(Path("matplotlib"), self._pool.submit(_warm_up))]

    def draw(self, function: Callable[..., None], *args: object) -> None:
        """Queue ``function(*args)``; one of ``args`` is the output path."""
        path = next(a for a in args if isinstance(a, Path))
        self._jobs.append((path, self._pool.submit(function, *args)))

    def finish(self) -> None:
        try:
            for path, job in self._jobs:
                try:
                    job.result()
                except Exception as exc:
                    raise DetectError(f"cannot draw {path}: {exc}") from None
        finally:
            self.close()

    def close(self) -> None:
        """Stop the helper; plots not drawn yet are dropped."""
        self._pool.shutdown(wait=True, cancel_futures=True)
