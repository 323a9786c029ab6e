"""Tracker study: today's tracker against Roboflow `trackers` (SORT, ByteTrack, OC-SORT,
BoT-SORT) and appearance cues, on the same detections of synthetic clips with identities.

Each clip (`detect synth --video`, 300 frames) goes through the model once at a low score
threshold (0.05); the detections, their masks' colour histograms and the frames' sizes are cached
in ``--work`` (keyed by the model's sha256). Every tracker then runs on those cached detections,
and its output (the detections given a track id) is scored against the clip's ground truth by
TrackEval (`detect.metrics.tracking`): IDF1, HOTA, ID switches; and frames/s of the tracker
alone (association only, the model's time left out).

    python benchmarks/tracker_study.py --model models/demo.onnx --work runs/tracker-study

Needs ``pip install trackers==2.6.1`` (with supervision) for the library trackers.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detect.appearance import colour_histograms
from detect.data.clip_conditions import ClipConditions
from detect.data.synth_video import write_clip
from detect.metrics.tracking import TrackedFrame, tracking_metrics
from detect.ops.boxes import xywh_to_xyxy
from detect.runtime.backend import open_backend
from detect.structures import Detections, DetectOptions
from detect.track import Tracker, TrackerConfig

LOW_SCORE = 0.05
CARD_SCORE = 0.7  # the demo model card's threshold: what `detect video` keeps today


@dataclass
class Frame:
    """One frame's cached detections: ``xyxy (N, 4)``, ``scores (N,)``, ``labels (N,)`` class
    names, ``hists (N, 512)`` their colour histograms (`detect.appearance`, as `detect video`
    computes them on its BGR frames)."""

    xyxy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    hists: np.ndarray


CLIPS: dict[str, dict[str, Any]] = {
    "seed7": {"seed": 7},
    "seed1": {"seed": 1},
    "seed2": {"seed": 2},
    "crowd": {
        "seed": 5,
        "street": True,
        "conditions": ClipConditions(crowd=8, occluders=3, perspective=0.5),
    },
    "night": {
        "seed": 4,
        "objects": 8,
        "conditions": ClipConditions(night=True, motion_blur=1.5, shake=3),
    },
    "hard": {"seed": 3, "street": True, "conditions": ClipConditions(hard=True)},
}
"""The clips: ``detect synth --video`` arguments (`write_clip`), 300 frames each."""


def detect_clip(model: Path, clip: Path) -> list[Frame]:
    """Every frame of ``clip`` through ``model`` at `LOW_SCORE`."""
    backend = open_backend(model=model)
    options = DetectOptions(score_threshold=LOW_SCORE)
    capture = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        found = backend.postprocess(backend.infer_batch([backend.prepare(rgb, "RGB")])[0], options)
        d = Detections.from_list(found)
        frames.append(Frame(d.xyxy, d.scores, d.labels, colour_histograms(bgr, d)))
    backend.close()
    return frames


def read_pictures(clip: Path) -> list[np.ndarray]:
    """Every frame of ``clip``, ``(H, W, 3) uint8`` BGR."""
    capture = cv2.VideoCapture(str(clip))
    pictures = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            return pictures
        pictures.append(bgr)


def truth(gt: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per frame: ground-truth ``ids (G,)``, ``xyxy (G, 4)``, ``category ids (G,)``."""
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    out = []
    for image in sorted(gt["images"], key=lambda i: i["frame_index"]):
        anns = by_image.get(image["id"], [])
        out.append(
            (
                np.array([a["track_id"] for a in anns], int),
                xywh_to_xyxy(np.array([a["bbox"] for a in anns], float).reshape(-1, 4)),
                np.array([a["category_id"] for a in anns], int),
            )
        )
    return out


# A tracker run: the cached frames, their (H, W, 3) BGR pictures and the clip's frame rate in;
# per frame the track id of each detection out (-1: not tracker output).
TrackerRun = Callable[[list[Frame], list[np.ndarray], float], list[np.ndarray]]


def ours(config: TrackerConfig, min_score: float) -> TrackerRun:
    def run(frames: list[Frame], pictures: list[np.ndarray], fps: float) -> list[np.ndarray]:
        tracker = Tracker(config)
        out = []
        for f in frames:
            keep = f.scores >= min_score
            ids = np.full(len(f.scores), -1)
            d = Detections.of(f.xyxy[keep], f.labels[keep], f.scores[keep])
            ids[keep] = tracker.update(d, f.hists[keep]).track_ids
            out.append(ids)
        return out

    return run


def library(
    make: Callable[[float], Any], min_score: float = LOW_SCORE, cmc: bool = False
) -> TrackerRun:
    """A `trackers` tracker (class-agnostic, as the library is) fed ``sv.Detections`` (and
    the frame, for BoT-SORT's camera motion compensation: ``cmc``)."""
    import supervision as sv

    def run(frames: list[Frame], pictures: list[np.ndarray], fps: float) -> list[np.ndarray]:
        tracker = make(fps)
        out = []
        for f, picture in zip(frames, pictures, strict=True):
            keep = np.flatnonzero(f.scores >= min_score)
            d = sv.Detections(
                xyxy=f.xyxy[keep].astype(np.float32),
                confidence=f.scores[keep].astype(np.float32),
                class_id=np.zeros(len(keep), int),
                data={"index": keep},
            )
            result = tracker.update(d, picture) if cmc else tracker.update(d)
            ids = np.full(len(f.scores), -1)
            if len(result):
                ids[result.data["index"]] = result.tracker_id
            out.append(ids)
        return out

    return run


def trackers_under_study() -> dict[str, TrackerRun]:
    from trackers import BoTSORTTracker, ByteTrackTracker, OCSORTTracker, SORTTracker

    keep = {"lost_track_buffer": 90}  # 30 frames at 10 fps, as detect's max_age
    return {
        "iou (before)": ours(TrackerConfig.of("iou"), CARD_SCORE),
        "iou, scores >= 0.1": ours(TrackerConfig.of("iou"), 0.1),
        "appearance": ours(TrackerConfig.of("appearance"), CARD_SCORE),
        "appearance, >= 0.1": ours(TrackerConfig.of("appearance"), 0.1),
        "SORT": library(lambda fps: SORTTracker(frame_rate=fps, **keep), CARD_SCORE),
        "ByteTrack": library(lambda fps: ByteTrackTracker(frame_rate=fps, **keep)),
        "OC-SORT": library(lambda fps: OCSORTTracker(frame_rate=fps, **keep)),
        "BoT-SORT": library(lambda fps: BoTSORTTracker(frame_rate=fps, **keep), cmc=True),
    }


def score(frames: list[Frame], ids: list[np.ndarray], gt: list[Any], names: list[str]) -> dict:
    category = {n: k + 1 for k, n in enumerate(names)}
    tracked = []
    for f, i, (gid, gbox, glab) in zip(frames, ids, gt, strict=True):
        keep = i >= 0
        tracked.append(
            TrackedFrame(
                gid,
                gbox,
                glab,
                i[keep],
                f.xyxy[keep],
                np.array([category[x] for x in f.labels[keep]], int),
            )
        )
    return tracking_metrics(tracked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo.onnx"))
    parser.add_argument("--work", type=Path, default=Path("runs/tracker-study"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--clips", default=",".join(CLIPS))
    parser.add_argument(
        "--only", default="", help="semicolon-separated tracker names (default all)"
    )
    args = parser.parse_args()
    import json

    digest = hashlib.sha256(args.model.read_bytes()).hexdigest()[:12]
    args.work.mkdir(parents=True, exist_ok=True)
    runs = trackers_under_study()
    if args.only:
        runs = {k: v for k, v in runs.items() if k in args.only.split(";")}
    rows = []
    for name in args.clips.split(","):
        clip = args.work / f"{name}.mp4"
        gt_path = write_clip(clip, frames=args.frames, **CLIPS[name])
        cache = args.work / f"{name}.{digest}.pkl"
        if not cache.exists():
            cache.write_bytes(pickle.dumps(detect_clip(args.model, clip)))
        frames = pickle.loads(cache.read_bytes())
        pictures = read_pictures(clip)
        gt_json = json.loads(gt_path.read_text())
        names = [c["name"] for c in gt_json["categories"]]
        fps = float(gt_json["info"]["fps"])
        gt = truth(gt_json)
        for tracker, run in runs.items():
            start = time.perf_counter()
            ids = run(frames, pictures, fps)
            took = time.perf_counter() - start
            m = score(frames, ids, gt, names)
            rows.append((name, tracker, m, len(frames) / took))
            print(
                f"{name:<10} {tracker:<24} IDF1 {m['IDF1']:.3f}  HOTA {m['HOTA']:.3f}  "
                f"MOTA {m['MOTA']:.3f}  IDSW {m['id_switches']:>3}  tracks {m['tracks']:>3} "
                f"for {m['gt_objects']:>2}  DetA {m['DetA']:.3f} AssA {m['AssA']:.3f} "
                f"miss {m['misses']} FP {m['false_positives']}  {len(frames) / took:7.0f} frames/s",
                flush=True,
            )


if __name__ == "__main__":
    main()
