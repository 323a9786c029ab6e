"""Tracker study: `detect.track` (by IoU, and with appearance cues) against Roboflow `trackers`
(SORT, ByteTrack, OC-SORT, BoT-SORT) on the same detections of synthetic clips with identities.

Each clip (`detect synth --video`, 300 frames, `CLIPS`) goes through the model once at a low
score threshold (0.05); the detections are cached in ``--work`` (keyed by the model's sha256).
Every tracker then runs on them and writes a `detect video`-style JSONL: the detections it gave a
track id, those it did not at the model card's threshold (0.7) with track id -1, and the events
of the site's zone ``centre`` and line ``middle`` (`detect synth --cameras`' layout). Each JSONL
is scored as ``detect eval --video CLIP.json --jsonl RUN.jsonl --zones/--line`` scores it:
TrackEval's IDF1, HOTA, MOTA and ID switches (`detect.metrics.video`) and the events' F1
(`detect.metrics.counting`, pooled over zone and line). frames/s: the tracker alone (its
association, and for the appearance tracker the colour histograms), the model's time left out.

The library trackers are class-agnostic (one tracker for every class, as `trackers` has them);
each keeps a lost track 30 frames as `detect.track` does (``lost_track_buffer`` 90 at 10 fps).
A track ends for counting once it is not seen for 30 frames, for every tracker alike.

    pip install trackers==2.6.1 supervision==0.31.2   # not a dependency of detect
    python benchmarks/tracker_study.py --model models/demo.onnx --work runs/tracker-study
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detect.appearance import colour_histograms
from detect.data.clip_conditions import ClipConditions
from detect.data.synth_video import site_layout, write_clip
from detect.metrics.clip import ClipRun, truth_frames
from detect.metrics.counting import score_counting
from detect.metrics.video import score_video
from detect.ops.boxes import box_iou
from detect.runtime.backend import open_backend
from detect.runtime.detector import check_model
from detect.structures import Detections, DetectOptions
from detect.track import Tracker, TrackerConfig
from detect.video.annotate import detection_records
from detect.zones import CountingSettings, Line, zones_from_dict

LOW_SCORE = 0.05
MAX_AGE = TrackerConfig().max_age  # frames a lost track is kept

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
"""The clips: `write_clip` arguments (320x240, 10 fps, 300 frames)."""


def site_counting(width: int = 320, height: int = 240) -> CountingSettings:
    """The zone and line of a `detect synth --cameras` site camera (`site_layout`)."""
    layout = site_layout(width, height)
    return CountingSettings(
        zones=zones_from_dict(layout["zones"]),
        lines=[Line.of(x["name"], x["points"], "study") for x in layout["lines"]],
    )


def read_pictures(clip: Path) -> list[np.ndarray]:
    """Every frame of ``clip``, ``(H, W, 3) uint8`` BGR."""
    capture = cv2.VideoCapture(str(clip))
    pictures = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            return pictures
        pictures.append(bgr)


def detect_clip(model: Path, pictures: list[np.ndarray]) -> list[Detections]:
    """Every frame through ``model`` at `LOW_SCORE`, with mask polygons."""
    backend = open_backend(model=model)
    options = DetectOptions(score_threshold=LOW_SCORE)
    frames = []
    for bgr in pictures:
        raw = backend.infer_batch([backend.prepare(bgr, "BGR")])[0]
        frames.append(Detections.from_list(backend.postprocess(raw, options)))
    backend.close()
    return frames


def truth_boxes(truth: dict[str, Any]) -> list[Detections]:
    """Each frame's ground-truth objects as detections of score 1 (boxes only: an appearance
    tracker's histograms are of whole boxes)."""
    by_frame = truth_frames(truth)
    nothing = Detections.of([], [])
    return [by_frame.get(int(i["frame_index"]), nothing) for i in truth["images"]]


def box_audit(frames: list[Detections], truth: dict[str, Any], score: float) -> tuple[int, int]:
    """Of the detections >= ``score``: ``(duplicates, background)``: the extra same-class
    boxes on one ground-truth object (IoU >= 0.5 with it, beyond the first), and the boxes that
    overlap no object (IoU < 0.1 with every one)."""
    objects = truth_boxes(truth)
    duplicates = background = 0
    for found, gt in zip(frames, objects, strict=True):
        keep = found.scores >= score
        boxes, labels = found.xyxy[keep], found.labels[keep]
        if not len(boxes):
            continue
        if not len(gt):
            background += len(boxes)
            continue
        iou = box_iou(boxes, gt.xyxy)
        best = iou.argmax(axis=1)
        on = Counter(
            int(b) for i, b in enumerate(best) if iou[i, b] >= 0.5 and labels[i] == gt.labels[b]
        )
        duplicates += sum(n - 1 for n in on.values())
        background += int((iou.max(axis=1) < 0.1).sum())
    return duplicates, background


# A tracker run: each frame's detections, its (H, W, 3) BGR picture and the clip's frame rate
# in; per frame the track id of each detection out (-1: not tracker output).
TrackerRun = Callable[[list[Detections], list[np.ndarray], float], list[np.ndarray]]


def ours(config: TrackerConfig, min_score: float) -> TrackerRun:
    """`detect.track.Tracker` as `detect video` runs it, fed the detections >= ``min_score``."""

    def run(frames: list[Detections], pictures: list[np.ndarray], fps: float) -> list[np.ndarray]:
        tracker = Tracker(config)
        out = []
        for found, picture in zip(frames, pictures, strict=True):
            keep = np.flatnonzero(found.scores >= min_score)
            kept = Detections.of(
                found.xyxy[keep],
                found.labels[keep],
                found.scores[keep],
                polygons=[found.polygons[i] for i in keep],
            )
            looks = colour_histograms(picture, kept) if config.appearance else None
            ids = np.full(len(found), -1)
            ids[keep] = tracker.update(kept, looks).track_ids
            out.append(ids)
        return out

    return run


def library(make: Callable[[float], Any], min_score: float = LOW_SCORE, cmc: bool = False):
    """A `trackers` tracker fed ``sv.Detections`` >= ``min_score`` (and the picture, for
    BoT-SORT's camera motion compensation: ``cmc``)."""
    import supervision as sv

    def run(frames: list[Detections], pictures: list[np.ndarray], fps: float) -> list[np.ndarray]:
        tracker = make(fps)
        out = []
        for found, picture in zip(frames, pictures, strict=True):
            keep = np.flatnonzero(found.scores >= min_score)
            given = sv.Detections(
                xyxy=found.xyxy[keep].astype(np.float32),
                confidence=found.scores[keep].astype(np.float32),
                class_id=np.zeros(len(keep), int),
                data={"index": keep},
            )
            result = tracker.update(given, picture) if cmc else tracker.update(given)
            ids = np.full(len(found), -1)
            if len(result):
                ids[result.data["index"]] = result.tracker_id
            out.append(ids)
        return out

    return run


def trackers_under_study(score: float) -> dict[str, TrackerRun]:
    """The trackers compared; ``score``: the model card's threshold (what `detect video`
    keeps)."""
    from trackers import BoTSORTTracker, ByteTrackTracker, OCSORTTracker, SORTTracker

    keep = {"lost_track_buffer": 90}  # 30 frames at 10 fps, as detect's max_age
    return {
        "iou (before)": ours(TrackerConfig.of("iou", confirm=0.0), score),
        "iou, scores >= 0.1": ours(TrackerConfig.of("iou", confirm=0.0), 0.1),
        "appearance, no confirm": ours(TrackerConfig.of("appearance", confirm=0.0), score),
        "appearance (chosen)": ours(TrackerConfig.of("appearance"), score),
        "appearance, >= 0.1": ours(TrackerConfig.of("appearance", confirm=0.0), 0.1),
        "re-link without colours": ours(TrackerConfig(appearance=True, appearance_gate=1.0), score),
        "SORT": library(lambda fps: SORTTracker(frame_rate=fps, **keep), score),
        "ByteTrack": library(lambda fps: ByteTrackTracker(frame_rate=fps, **keep)),
        "OC-SORT": library(lambda fps: OCSORTTracker(frame_rate=fps, **keep)),
        "BoT-SORT": library(lambda fps: BoTSORTTracker(frame_rate=fps, **keep), cmc=True),
    }


def write_run(
    path: Path,
    frames: list[Detections],
    ids: list[np.ndarray],
    times_ms: list[float],
    counting: CountingSettings,
    score: float,
) -> None:
    """The run as `detect video` writes its JSONL: per frame the tracked detections and the
    untracked ones >= ``score``, and the zone and line events."""
    counter = counting.counter()
    last_seen: dict[int, int] = {}
    with path.open("w", encoding="utf-8") as out:
        for index, (found, track_ids, time_ms) in enumerate(
            zip(frames, ids, times_ms, strict=True)
        ):
            keep = np.flatnonzero((track_ids >= 0) | (found.scores >= score))
            shown = Detections.of(
                found.xyxy[keep], found.labels[keep], found.scores[keep], track_ids=track_ids[keep]
            )
            for track_id in track_ids[track_ids >= 0].tolist():
                last_seen[track_id] = index
            live = {t for t, seen in last_seen.items() if index - seen <= MAX_AGE}
            _, events = counter.update(shown, index, time_ms, live)
            record = {
                "frame": index,
                "timestamp_ms": time_ms,
                "detections": detection_records(shown),
                "events": events,
            }
            out.write(json.dumps(record) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo.onnx"))
    parser.add_argument("--work", type=Path, default=Path("runs/tracker-study"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--clips", default=",".join(CLIPS), help="comma-separated clip names")
    parser.add_argument(
        "--truth-boxes",
        action="store_true",
        help="track the ground truth's boxes (score 1) instead of the model's: a perfect detector",
    )
    args = parser.parse_args()
    digest = hashlib.sha256(args.model.read_bytes()).hexdigest()[:12]
    args.work.mkdir(parents=True, exist_ok=True)
    score = float(check_model(args.model).thresholds["score"])
    runs = trackers_under_study(score)
    counting = site_counting()
    table = []
    for name in args.clips.split(","):
        clip = args.work / f"{name}.mp4"
        gt_path = write_clip(clip, frames=args.frames, **CLIPS[name])
        pictures = read_pictures(clip)
        truth = json.loads(gt_path.read_text())
        if args.truth_boxes:
            frames = truth_boxes(truth)
        else:
            cache = args.work / f"{name}.{digest}.pkl"
            if not cache.exists():
                cache.write_bytes(pickle.dumps(detect_clip(args.model, pictures)))
            frames = pickle.loads(cache.read_bytes())
        fps = float(truth["info"]["fps"])
        if not args.truth_boxes:
            duplicates, background = box_audit(frames, truth, score)
            print(
                f"{name}: boxes >= {score}: {duplicates} extra same-class boxes on one "
                f"object, {background} on the background (IoU < 0.1 with every object)"
            )
        times = [float(i["timestamp_ms"]) for i in sorted(truth["images"], key=lambda i: i["id"])]
        for tracker, run in runs.items():
            start = time.perf_counter()
            ids = run(frames, pictures, fps)
            speed = len(frames) / (time.perf_counter() - start)
            kind = "truth" if args.truth_boxes else "model"
            jsonl = args.work / f"{name}.{kind}.{''.join(c for c in tracker if c.isalnum())}.jsonl"
            write_run(jsonl, frames, ids, times, counting, score)
            run = ClipRun.read(gt_path, jsonl)
            m = score_video(run)
            f1 = score_counting(run, counting)["all"]["f1"]
            row = (name, tracker, m["IDF1"], m["HOTA"], m["MOTA"], m["id_switches"], f1, speed)
            table.append(row)
            print(
                f"{name:<6} {tracker:<20} IDF1 {m['IDF1']:.3f}  HOTA {m['HOTA']:.3f}  "
                f"MOTA {m['MOTA']:.3f}  IDSW {m['id_switches']:>3}  count F1 "
                f"{'-' if f1 is None else f'{f1:.3f}'}  tracks {m['tracks']:>3} for "
                f"{m['gt_objects']:>2}  {speed:6.0f} frames/s",
                flush=True,
            )
    print("\n| clip | tracker | IDF1 | HOTA | MOTA | ID switches | count F1 | frames/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, tracker, idf1, hota, mota, switches, f1, speed in table:
        count = "-" if f1 is None else f"{f1:.3f}"
        print(
            f"| {name} | {tracker} | {idf1:.3f} | {hota:.3f} | {mota:.3f} | {switches} | "
            f"{count} | {speed:.0f} |"
        )


if __name__ == "__main__":
    main()
