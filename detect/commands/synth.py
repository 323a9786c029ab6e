"""`detect synth`: flags from `SynthSettings`' declarations; an image dataset (``--out``), a clip
(``--video``) or a site of clips (``--video FOLDER --cameras N``); what was written, and the share
of frames without an object, on stdout."""

from __future__ import annotations

import argparse

from detect.commands.flags import add_flags, from_flags
from detect.data.synth import SynthSettings, write_dataset
from detect.data.synth_video import clip_info, write_clip, write_site
from detect.progress import Progress


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, SynthSettings, required_groups=("target",))


def run(args: argparse.Namespace) -> int:
    settings = from_flags(SynthSettings, args)
    if settings.video is None:
        path = write_dataset(
            settings.out,
            images=settings.images,
            seed=settings.seed,
            size=settings.size,
            degrade=settings.degrade,
            progress=Progress,
        )
        print(f"wrote {settings.images} images and {path}")
        return 0
    width, height = settings.video_size
    clip = {
        "frames": settings.frames,
        "seed": settings.seed,
        "width": width,
        "height": height,
        "fps": settings.fps,
        "objects": settings.objects,
        "degrade": settings.degrade,
        "conditions": settings.conditions,
    }
    if settings.cameras is not None:
        path = write_site(settings.video, settings.cameras, **clip)
        shares = [
            clip_info(path.parent / f"cam{k}.json")["empty_share"]
            for k in range(1, settings.cameras + 1)
        ]
        print(
            f"wrote {settings.cameras} clips of {settings.frames} frames and {path}; "
            f"{_percent(sum(shares) / len(shares))} of frames empty"
        )
        return 0
    path = write_clip(settings.video, **clip)
    print(
        f"wrote {settings.frames} frames to {settings.video} and the ground truth to {path}; "
        f"{_percent(clip_info(path)['empty_share'])} of frames empty"
    )
    return 0


def _percent(share: float) -> str:
    """``0.7042`` -> ``70 %``."""
    return f"{100 * share:.0f} %"
