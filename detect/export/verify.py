"""``detect export --verify``: the parity check (`detect.parity`) of the written model against
the PyTorch model it was traced from, on the user's images, recorded in its card."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from detect.parity import ParityReport, parity_for_files
from detect.progress import StartProgress, silent
from detect.runtime.model_card import ModelCard, card_path


def verify(
    model: nn.Module,
    model_path: Path,
    card: ModelCard,
    images: Path,
    progress: StartProgress = silent,
) -> ParityReport:
    """Compare ``model`` with its export at ``model_path`` on the images in ``images`` (a folder
    or a file), each side's images done to ``progress``, and write the figures into ``card``
    (``parity``) beside the model."""
    report = parity_for_files(model, model_path, [images], progress=progress)
    card.parity = report.summary()
    card.write(card_path(model_path))
    return report
