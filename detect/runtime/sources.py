"""Where images come from: files as given, image files under folders, and their bytes.

One list of image suffixes for the whole project (listing folders, importing datasets, naming
annotated copies), one way to list inputs (`list_files`: files, folders, glob patterns) for
images and video files alike (`detect.video.source.VIDEO_SUFFIXES`), and one digest of a file's
bytes (`sha256_file`: models, and inputs that a run again skips). Video frames come from
`detect.video.source`.
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path

from detect.errors import DataError, InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""Suffixes (lower case) of the files taken as images when a folder is listed."""


def is_image_file(path: Path) -> bool:
    """A file whose suffix (any case) is one of `IMAGE_SUFFIXES`."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def list_files(inputs: list[Path], suffixes: tuple[str, ...]) -> list[Path]:
    """Files as given (whatever their suffix, found or not: their reader says), the files
    under each folder whose suffix (any case) is one of ``suffixes`` (recursively, sorted), and
    for a glob pattern that names no file (``clips/*.mp4``, ``**`` included) the files and
    folders it matches, sorted, taken as above but that a file must have one of ``suffixes``;
    each file once, in the order first met."""

    def wanted(path: Path) -> bool:
        return path.suffix.lower() in suffixes and path.is_file()

    found: dict[Path, Path] = {}  # resolved -> as given

    def add_folder(folder: Path) -> None:
        for p in sorted(p for p in folder.rglob("*") if wanted(p)):
            found.setdefault(p.resolve(), p)

    for path in map(Path, inputs):
        if not path.exists() and glob.has_magic(str(path)):
            for match in map(Path, sorted(glob.glob(str(path), recursive=True))):
                if match.is_dir():
                    add_folder(match)
                elif wanted(match):
                    found.setdefault(match.resolve(), match)
        elif path.is_dir():
            add_folder(path)
        else:
            found.setdefault(path.resolve(), path)
    return list(found.values())


def list_images(inputs: list[Path]) -> list[Path]:
    """`list_files` of image files (`IMAGE_SUFFIXES`)."""
    return list_files(inputs, IMAGE_SUFFIXES)


def find_images(inputs: list[Path]) -> list[Path]:
    """`list_images`, or a `DataError` naming the inputs when there is none."""
    images = list_images(inputs)
    if not images:
        raise DataError(f"no images found in {', '.join(map(str, inputs))}")
    return images


class ReadError(InputError):
    """An image file that cannot be read."""


def read_image(path: Path) -> bytes:
    """The bytes of an image file; otherwise a `ReadError` with the OS's reason, for the caller
    to name the file with."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ReadError(f"cannot read it ({exc.strerror or exc})") from None


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes (hex); `OSError` when it cannot be read."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
