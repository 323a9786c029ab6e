"""User input -> the detector's image array, without torch (NumPy, Pillow).

Output convention: an ``(H, W, 3) uint8`` RGB array, C-contiguous (row-major), with the origin at
the top-left pixel: ``image[row, col] = (R, G, B)``, ``row`` growing downwards and ``col``
rightwards, as displayed after EXIF orientation. The array is always a fresh, writeable buffer
that shares no memory with the input.

`decode_image` takes the bytes of an encoded JPEG, PNG, BMP, WebP or TIFF file (other formats are
refused). Before any pixel data is decoded, the width and height from the file header are checked
against ``max_pixels``, so a decompression bomb is refused without allocating its pixels. Then:

- EXIF orientation (all 8 values) is applied, so the array is upright as a viewer shows it.
- Multi-frame files (animated WebP, multi-page TIFF): only the first frame is used.
- RGB is kept; L (8-bit gray) and 1 (bilevel, 0 -> 0 and 1 -> 255) are repeated into 3 channels;
  P (palette, with or without a transparent index) is looked up in its palette; CMYK, YCbCr and
  the other colour modes are converted by Pillow.
- Alpha (LA, PA, RGBA, a palette's transparency) is dropped, not composited over a background:
  each pixel keeps its colour whatever its opacity, like OpenCV's ``IMREAD_COLOR``.
- 16-bit samples keep their high byte (``v >> 8``), which maps the full 0..65535 range onto
  0..255 (Pillow's own ``convert("L")`` clips instead). 16-bit RGB(A) PNGs are already reduced
  that way by Pillow. 32-bit integer TIFFs (Pillow mode ``I``) are scaled the same way by their
  type's range: unsigned ``v >> (bits - 8)``, signed ``(v + 2 ** (bits - 1)) >> (bits - 8)``.
- Float samples (mode ``F``) are taken as 0..1, clipped, scaled by 255 and rounded; NaN -> 0.
- Embedded ICC profiles and PNG gamma are ignored (as by OpenCV).
- Truncated or corrupt files are refused (Pillow's ``LOAD_TRUNCATED_IMAGES`` is left off).

`array_to_rgb` takes raw pixels whose layout the caller names: ``(H, W)`` or ``(H, W, 1)`` gray,
``(H, W, 3)`` RGB or BGR, ``(H, W, 4)`` RGBA or BGRA (alpha dropped), as ``uint8`` or ``uint16``
(``v >> 8``). Gray is repeated into 3 channels and BGR(A) is reordered to RGB.

Every refusal raises `ImageError`, whose one-line message says what is wrong and how to fix it.
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from detect.errors import ConfigError, InputError

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest accepted width x height (50 MP: a 8660 x 5773 photo, 150 MB as RGB uint8)."""

_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")
_ACCEPTED = "JPEG, PNG, BMP, WebP or TIFF"
_ACCEPTED_SLASHES = "JPEG/PNG/BMP/WebP/TIFF"
_SNIFF = {b"GIF87a": "GIF", b"GIF89a": "GIF", b"%PDF": "PDF", b"\x00\x00\x01\x00": "ICO"}
"""Leading bytes of common formats that are refused, to name them in the error message."""
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF"}
"""ISO-BMFF brands (bytes 8..12, after ``ftyp`` at 4..8) of refused formats."""
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError)
"""What Pillow's plugins raise on bad data (OSError covers a truncated file)."""
_COLORS = ("RGB", "BGR")


class ImageError(InputError):
    """An image that cannot be used as given (empty, undecodable, truncated, too large...)."""


# --- encoded bytes ---------------------------------------------------------------------------


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a JPEG, PNG, BMP, WebP or TIFF file into an upright ``(H, W, 3) uint8`` RGB array.

    ``data`` is the whole encoded file (bytes-like). Raises `ImageError` when it is empty, not one
    of those formats, truncated or corrupt, has no pixels, or has more than ``max_pixels`` pixels
    (checked from the header, before decoding).
    """
    _check_max_pixels(max_pixels)
    if len(data) == 0:
        raise ImageError(f"image is empty (0 bytes); send an encoded {_ACCEPTED_SLASHES} file")
    image = _open(data)
    _check_size(image.width, image.height, max_pixels)
    try:
        image.load()
        image = _upright(image)
        return _to_rgb(image)
    except Image.DecompressionBombError as err:
        raise _bomb_error(err) from None
    except _DECODE_ERRORS as err:
        raise ImageError(
            f"image is truncated or corrupt ({_one_line(err)}); send the complete "
            "file, or re-encode it"
        ) from None


def _open(data: bytes) -> Image.Image:
    """Open lazily (header only), restricted to the accepted formats, refusing bombs."""
    try:
        # Pillow warns past MAX_IMAGE_PIXELS; our own max_pixels is the limit that applies.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=_FORMATS)
    except Image.DecompressionBombError as err:
        raise _bomb_error(err) from None
    except UnidentifiedImageError:
        raise ImageError(_unknown_format_message(data)) from None
    except _DECODE_ERRORS as err:
        raise ImageError(
            f"image header is corrupt ({_one_line(err)}); re-encode the file as {_ACCEPTED}"
        ) from None


def _unknown_format_message(data: bytes) -> str:
    head = bytes(data[:16])
    name = next((fmt for magic, fmt in _SNIFF.items() if head.startswith(magic)), None)
    if name is None and head[4:8] == b"ftyp":
        name = _FTYP_BRANDS.get(head[8:12])
    if name is not None:
        return f"cannot decode image: {name} is not supported; send a {_ACCEPTED} file"
    return f"cannot decode image: not a {_ACCEPTED} file"


def _bomb_error(err: Exception) -> ImageError:
    """Pillow's own refusal (over ``2 * Image.MAX_IMAGE_PIXELS``), raised before our check."""
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
    found = re.search(r"\((\d+) pixels\)", str(err))
    size = f"{_megapixels(int(found.group(1)))} MP" if found else "too large"
    return ImageError(
        f"image is {size}, over Pillow's decompression-bomb limit of {limit:.0f} MP; downscale it"
    )


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (1..8); unreadable EXIF counts as upright."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS:
        return image
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(image)
    return image


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Pixels of a loaded image of any Pillow mode as ``(H, W, 3) uint8`` RGB (see module doc)."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "RGBX", "L", "LA"):
        pixels = np.asarray(image)
    elif mode == "1":
        pixels = np.asarray(image.convert("L"))
    elif mode in ("P", "PA"):
        pixels = np.asarray(image.convert("RGBA"))  # a transparent index keeps its palette colour
    elif mode.startswith("I;16"):
        pixels = (np.asarray(image) >> 8).astype(np.uint8)
    elif mode == "I":
        pixels = _int32_to_uint8(np.asarray(image), *_tiff_sample_type(image))
    elif mode == "F":
        pixels = _float_to_uint8(np.asarray(image))
    else:  # CMYK, YCbCr, HSV, RGBa, La...
        try:
            pixels = np.asarray(image.convert("RGB"))
        except ValueError:
            raise ImageError(
                f"image has pixel mode {mode}, which cannot be converted to RGB; "
                "re-encode it as 8-bit RGB"
            ) from None
    return _channels_to_rgb(pixels)


def _tiff_sample_type(image: Image.Image) -> tuple[int, bool]:
    """``(bits per sample, signed)`` of a mode-``I`` image (a 32- or 16-bit integer TIFF)."""
    tags = getattr(image, "tag_v2", {})
    bits = tags.get(258, (32,))
    sample_format = tags.get(339, (1,))
    bits = bits[0] if isinstance(bits, tuple) else bits
    sample_format = sample_format[0] if isinstance(sample_format, tuple) else sample_format
    if bits not in (8, 16, 32):
        bits = 32
    return int(bits), sample_format == 2


def _int32_to_uint8(values: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Scale ``bits``-bit integers, held in int32, by their type's range onto 0..255."""
    wide = values.astype(np.int64)
    if signed:
        wide += 1 << (bits - 1)
    else:
        wide &= (1 << bits) - 1  # unsigned 32-bit values arrive bit-cast into int32
    return (wide >> (bits - 8)).astype(np.uint8)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    scaled = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def _channels_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """``(H, W)``, ``(H, W, 2)`` (gray, alpha), ``(H, W, 3)`` or ``(H, W, 4)`` -> fresh RGB."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] in (1, 2):
        return np.repeat(pixels[:, :, :1], 3, axis=2)
    return np.array(pixels[:, :, :3], dtype=np.uint8, order="C")


# --- raw arrays --------------------------------------------------------------------------------


def array_to_rgb(array: np.ndarray, color: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Raw pixels of a stated channel order -> a fresh ``(H, W, 3) uint8`` RGB array.

    ``array`` is ``(H, W)`` / ``(H, W, 1)`` gray, ``(H, W, 3)`` colour or ``(H, W, 4)`` colour
    plus alpha (dropped), ``uint8`` or ``uint16`` (high byte kept). ``color`` is ``"RGB"`` or
    ``"BGR"`` and names the order of the colour channels (ignored for gray, but still required).
    Raises `ImageError` on anything else, on an empty array or over ``max_pixels`` pixels.
    """
    _check_max_pixels(max_pixels)
    if color not in _COLORS:
        raise ImageError(
            f"color must be 'RGB' or 'BGR', got {color!r}; name the channel order of the array"
        )
    if not isinstance(array, np.ndarray):
        raise ImageError(f"image must be a NumPy array, got {type(array).__name__}")
    shape = "x".join(map(str, array.shape)) or "scalar"
    channels = array.shape[2] if array.ndim == 3 else 1
    if array.ndim not in (2, 3) or channels not in (1, 3, 4):
        raise ImageError(
            f"image array has shape {shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
        )
    if array.dtype.kind != "u" or array.dtype.itemsize not in (1, 2):
        raise ImageError(
            f"image array has dtype {array.dtype}; expected uint8 or uint16 "
            "(convert floats to uint8 0..255)"
        )
    _check_size(array.shape[1], array.shape[0], max_pixels)
    pixels = array >> 8 if array.dtype.itemsize == 2 else array
    pixels = pixels.astype(np.uint8, copy=False)
    if channels >= 3 and color == "BGR":
        pixels = pixels[:, :, 2::-1]
    return _channels_to_rgb(pixels)


def to_rgb(
    image: bytes | np.ndarray, color: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB from encoded bytes (`decode_image`), or from pixels with their
    ``color`` order (`array_to_rgb`): how every local backend prepares an image."""
    if isinstance(image, bytes | bytearray | memoryview):
        return decode_image(bytes(image), max_pixels)
    if color is None:
        raise ConfigError("an image array needs color='RGB' or color='BGR' (its channel order)")
    return array_to_rgb(np.asarray(image), color, max_pixels)


# --- shared checks -----------------------------------------------------------------------------


def _check_max_pixels(max_pixels: int) -> None:
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"image is {width}x{height}, it has no pixels; send a non-empty image")
    pixels = width * height
    if pixels > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {_megapixels(pixels)} MP, over the "
            f"{max_pixels / 1e6:g} MP limit; downscale it or raise the pixel limit"
        )


def _megapixels(pixels: int) -> str:
    """``108_000_000 -> "108.0"``, ``1200 -> "0.0012"``."""
    return f"{pixels / 1e6:.1f}" if pixels >= 100_000 else f"{pixels / 1e6:.2g}"
