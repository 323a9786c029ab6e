"""How well `detect video` did on a clip with ground-truth identities (`detect synth --video`).

Detection: COCO AP and AP50 of the boxes over the processed frames, each frame one COCOeval
image (pycocotools). The JSONL holds only the detections the run kept (its score threshold), so
AP here is that of the run's output, a lower bound of the model's AP on the clip.
Tracking: MOTA, MOTP, IDF1, HOTA (DetA, AssA), ID switches, matches, misses and false positives
by TrackEval (`detect.metrics.tracking`), over the same frames; detections without a track id
(-1: the run did not track, or the track was not confirmed yet) are not tracker output.

The ground truth and the JSONL: `detect.metrics.clip`. Zone and line counts:
`detect.metrics.counting`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detect.errors import DataError
from detect.metrics.clip import ClipRun, record_detections, truth_frames
from detect.metrics.coco import ap_text, defined, load_gt, run_cocoeval, summary
from detect.metrics.tracking import TrackedFrame, tracking_metrics
from detect.structures import Detections


def score_video(run: ClipRun) -> dict[str, Any]:
    """AP, AP50 and the tracking figures of a run (`ClipRun.read`) against the clip's ground
    truth.

    Returns ``frames`` (scored), ``objects`` (distinct ground-truth tracks in them), ``AP``,
    ``AP50`` (None where undefined: no ground-truth object in the scored frames) and
    `tracking_metrics`' figures.
    """
    data, records, gt_path = run.data, run.records, run.gt_path
    image_of = {int(img["frame_index"]): int(img["id"]) for img in data["images"]}
    category_of = {c["name"]: int(c["id"]) for c in data["categories"]}
    results = []
    for record in records:
        for d in record["detections"]:
            if d["label"] not in category_of:
                raise DataError(
                    f"{run.jsonl_path}: label {d['label']!r} is not a class of {gt_path}"
                )
            results.append(
                {
                    "image_id": image_of[record["frame"]],
                    "category_id": category_of[d["label"]],
                    "bbox": [d["left"], d["top"], d["width"], d["height"]],
                    "score": d["score"],
                }
            )
    frames = {image_of[r["frame"]] for r in records}
    figures = defined(summary(run_cocoeval(load_gt(gt_path, frames, data), results, "bbox")))
    truth_of = truth_frames(data)
    nothing = Detections.of([], [])
    tracked = []
    objects: set[int] = set()
    for record in records:
        truth = truth_of.get(record["frame"], nothing)
        found = record_detections(record["detections"])
        objects.update(truth.track_ids.tolist())
        tracked.append(
            TrackedFrame(
                truth.track_ids,
                truth.xyxy,
                truth.class_ids,
                found.track_ids,
                found.xyxy,
                np.array([category_of[x] for x in found.labels], int),
            )
        )
    return {
        "frames": len(frames),
        "objects": len(objects),
        "AP": figures["AP"],
        "AP50": figures["AP50"],
        **tracking_metrics(tracked),
    }


def video_table(scores: dict[str, Any]) -> str:
    """The figures of `score_video` as a small text table."""
    rows = [
        ("frames scored", f"{scores['frames']}"),
        ("objects (ground truth)", f"{scores['objects']}"),
        ("box AP / AP50", f"{ap_text(scores['AP'])} / {ap_text(scores['AP50'])}"),
        ("MOTA", f"{scores['MOTA']:.3f}"),
        ("MOTP (IoU)", f"{scores['MOTP']:.3f}"),
        ("IDF1", f"{scores['IDF1']:.3f}"),
        ("HOTA (DetA, AssA)", f"{scores['HOTA']:.3f} ({scores['DetA']:.3f}, {scores['AssA']:.3f})"),
        ("ID switches", f"{scores['id_switches']}"),
        (
            "matches / misses / false positives",
            f"{scores['matches']} / {scores['misses']} / {scores['false_positives']}",
        ),
        ("tracks for objects", f"{scores['tracks']} for {scores['gt_objects']}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
