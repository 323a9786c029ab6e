"""Where images come from: files as given, image files under folders, and their bytes.

One list of image suffixes for the whole project (listing folders, importing datasets, naming
annotated copies). Video frames come from `detect.video.source`.
"""

from __future__ import annotations

from pathlib import Path

from detect.errors import DataError, InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""Suffixes (lower case) of the files taken as images when a folder is listed."""


def is_image_file(path: Path) -> bool:
    """A file whose suffix (any case) is one of `IMAGE_SUFFIXES`."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def list_images(inputs: list[Path]) -> list[Path]:
    """Files as given (whatever their suffix), and the image files under each folder
    (recursively, by suffix, sorted); each file once, in the order first met."""
    images: dict[Path, Path] = {}  # resolved -> as given
    for path in map(Path, inputs):
        if path.is_dir():
            for p in sorted(p for p in path.rglob("*") if is_image_file(p)):
                images.setdefault(p.resolve(), p)
        else:
            images.setdefault(path.resolve(), path)
    return list(images.values())


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
