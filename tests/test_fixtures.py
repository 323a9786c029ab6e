"""The tiny fixture models are worth testing with: each detects its own training images with
confident scores, and the guard in conftest refuses a degenerate run."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import TINY_RECIPES, check_tiny_run

from detect.models.checkpoint import load_checkpoint, model_from_checkpoint
from detect.ops import box_iou
from detect.ops.boxes import xywh_to_xyxy
from detect.parity import TOLERANCES

CONFIDENT = 0.5


@pytest.mark.parametrize(("arch", "roi"), list(TINY_RECIPES))
def test_fixture_model_scores_its_training_objects_confidently(
    arch: str, roi: str, tiny_runs: dict, shapes_small: Path
) -> None:
    """Every training image with objects gets detections above the parity floor, and at least
    half of all objects a same-class box at IoU >= 0.5 scoring >= 0.5."""
    check_tiny_run(tiny_runs[arch, roi].parent, arch, roi)
    checkpoint = load_checkpoint(tiny_runs[arch, roi])
    model = model_from_checkpoint(checkpoint)
    label_of = {cid: k + 1 for k, cid in enumerate(checkpoint["category_ids"])}
    gt = json.loads((shapes_small / "train.json").read_text())
    objects = found = 0
    for image in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == image["id"]]
        if not anns:
            continue
        rgb = cv2.imread(str(shapes_small / image["file_name"]))[:, :, ::-1].copy()
        with torch.no_grad():
            out = model([torch.from_numpy(rgb).permute(2, 0, 1).float() / 255])[0]
        scores = out["scores"]
        assert (scores >= TOLERANCES["fp32"].floor).any(), (image["file_name"], scores[:5])
        confident = scores >= CONFIDENT
        boxes, labels = out["boxes"][confident], out["labels"][confident]
        for ann in anns:
            objects += 1
            same = labels == label_of[ann["category_id"]]
            truth = xywh_to_xyxy(np.array([ann["bbox"]], np.float32))
            if same.any():
                found += bool((box_iou(truth, boxes[same].numpy()) >= 0.5).any())
    assert found >= 0.5 * objects, f"{found} of {objects} objects found at score >= {CONFIDENT}"


def test_a_degenerate_fixture_run_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text(
        "epoch,loss,val_bbox_AP50,val_segm_AP50\n1,7.0,,\n2,6.5,0.0,0.0\n"
    )
    with pytest.raises(AssertionError, match="degenerate") as info:
        check_tiny_run(tmp_path, "mask_rcnn", "align")
    message = str(info.value)
    assert "box AP50 0.000 < 0.9" in message and "mask AP50" in message and "loss fell" in message
