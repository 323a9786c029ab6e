"""detect.runtime.image: user bytes / arrays -> (H, W, 3) uint8 RGB, on real encoded files."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from detect.errors import DetectError
from detect.runtime.image import DEFAULT_MAX_PIXELS, ImageError, array_to_rgb, decode_image

# --------------------------------------------------------------------------- helpers


def _pattern(height: int = 6, width: int = 10, seed: int = 0) -> np.ndarray:
    """An asymmetric RGB image: every pixel differs, so any flip or rotation shows."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _blocky(height: int = 32, width: int = 48) -> np.ndarray:
    """Solid 16x16 colour blocks: survives JPEG (and its 2x2 chroma subsampling) nearly intact."""
    colours = _pattern(height // 16, width // 16, seed=1)
    return np.repeat(np.repeat(colours, 16, axis=0), 16, axis=1)


def _photo_like(height: int = 120, width: int = 160) -> np.ndarray:
    """Smooth gradients plus mild noise, roughly like a photo."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb = np.stack(
        [128 + 90 * np.sin(x / 17 + y / 29), 128 + 70 * np.cos(y / 13), 40 + x + 0.5 * y], -1
    )
    noise = np.random.default_rng(2).normal(0, 6, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def _encode(image: Image.Image | np.ndarray, fmt: str, **options: object) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR (with a valid CRC) claims ``width x height``: no pixel data."""
    data = bytearray(_encode(Image.new("L", (1, 1)), "PNG"))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(data[12:29]))
    return bytes(data)


def _set_tiff_tag(data: bytes, tag: int, value: int) -> bytes:
    """Overwrite an inline SHORT/LONG ``tag`` of a little-endian single-IFD TIFF."""
    out = bytearray(data)
    ifd = struct.unpack_from("<I", out, 4)[0]
    for k in range(struct.unpack_from("<H", out, ifd)[0]):
        entry = ifd + 2 + 12 * k
        if struct.unpack_from("<H", out, entry)[0] == tag:
            kind = struct.unpack_from("<H", out, entry + 2)[0]
            struct.pack_into("<H" if kind == 3 else "<I", out, entry + 8, value)
            return bytes(out)
    raise AssertionError(f"tag {tag} not in the TIFF")


def _with_orientation(pixels: np.ndarray, orientation: int, fmt: str, **options: object) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(pixels, fmt, exif=exif, **options)


# What each EXIF orientation means: the stored array -> the array as it is to be displayed.
DISPLAYED: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,  # upright
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # transposed (mirrored about the main diagonal)
    6: lambda a: np.rot90(a, k=-1),  # rotated 90 clockwise for display
    7: lambda a: np.rot90(a, k=2).transpose(1, 0, 2),  # transversed (the anti-diagonal)
    8: lambda a: np.rot90(a, k=1),  # rotated 90 counter-clockwise for display
}


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"}),
     ("WEBP", {"lossless": True})],
    ids=["png", "bmp", "tiff", "tiff-lzw", "webp-lossless"],
)  # fmt: skip
def test_lossless_formats_round_trip_exactly(
    tmp_path: Path, fmt: str, options: dict[str, object]
) -> None:
    original = _pattern(23, 37)
    path = tmp_path / f"image.{fmt.lower()}"
    Image.fromarray(original).save(path, fmt, **options)
    np.testing.assert_array_equal(decode_image(path.read_bytes()), original)


def test_jpeg_round_trips_within_a_small_tolerance(tmp_path: Path) -> None:
    original = _photo_like()
    path = tmp_path / "photo.jpg"
    Image.fromarray(original).save(path, "JPEG", quality=95)
    error = np.abs(decode_image(path.read_bytes()).astype(int) - original)
    assert error.mean() < 6 and error.max() < 40  # 4.3 and 28 seen; swapped channels: 49


def test_jpeg_decodes_like_opencv_imread_color() -> None:
    data = _encode(_photo_like(), "JPEG", quality=85)
    ours = decode_image(data).astype(int)
    opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert np.abs(ours - opencv).max() <= 2  # both bundle libjpeg-turbo: 0 observed


def test_output_is_a_fresh_c_contiguous_uint8_rgb_array() -> None:
    image = decode_image(_encode(_pattern(), "PNG"))
    assert image.shape == (6, 10, 3) and image.dtype == np.uint8
    assert image.flags.c_contiguous and image.flags.writeable


def test_accepts_bytearray_and_memoryview() -> None:
    data = _encode(_pattern(), "PNG")
    np.testing.assert_array_equal(decode_image(bytearray(data)), _pattern())
    np.testing.assert_array_equal(decode_image(memoryview(data)), _pattern())


# --------------------------------------------------------------------------- EXIF orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    stored = _pattern(5, 8)
    data = _with_orientation(stored, orientation, "PNG")  # PNG keeps EXIF (eXIf chunk)
    np.testing.assert_array_equal(decode_image(data), DISPLAYED[orientation](stored))


def test_exif_orientation_6_is_rotated_clockwise() -> None:
    stored = np.zeros((2, 3, 3), np.uint8)
    stored[0, 0] = (255, 0, 0)  # stored top-left: red
    image = decode_image(_with_orientation(stored, 6, "PNG"))
    assert image.shape == (3, 2, 3)  # portrait: width and height swap
    assert image[0, 1].tolist() == [255, 0, 0]  # ... and red is shown top-right


def test_exif_orientation_in_a_jpeg_is_applied() -> None:
    stored = _blocky()
    image = decode_image(_with_orientation(stored, 8, "JPEG", quality=95))
    assert image.shape == (48, 32, 3)
    assert np.abs(image.astype(int) - DISPLAYED[8](stored)).mean() < 6  # 2.9 seen


# --------------------------------------------------------------------------- pixel modes


def test_grayscale_is_repeated_into_three_channels() -> None:
    gray = _pattern()[:, :, 0]
    image = decode_image(_encode(gray, "PNG"))
    np.testing.assert_array_equal(image, np.repeat(gray[:, :, None], 3, axis=2))


def test_gray_with_alpha_keeps_the_gray_and_drops_the_alpha() -> None:
    gray = _pattern()[:, :, 0]
    alpha = np.zeros_like(gray)  # fully transparent: still the gray, not a background
    image = decode_image(_encode(Image.fromarray(np.dstack([gray, alpha]), "LA"), "PNG"))
    np.testing.assert_array_equal(image, np.repeat(gray[:, :, None], 3, axis=2))


def test_bilevel_image_is_black_and_white() -> None:
    bits = np.array([[0, 1, 1], [1, 0, 0]], bool)
    image = decode_image(_encode(Image.fromarray(bits), "PNG"))
    np.testing.assert_array_equal(image[:, :, 0], bits * 255)
    assert (image == image[:, :, :1]).all()


def _palette_image(transparent_index: int | None = None) -> Image.Image:
    palette = Image.new("P", (3, 2))
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    palette.putdata([0, 1, 2, 2, 1, 0])
    if transparent_index is not None:
        palette.info["transparency"] = transparent_index
    return palette


PALETTE_RGB = [
    [[255, 0, 0], [0, 255, 0], [0, 0, 255]],
    [[0, 0, 255], [0, 255, 0], [255, 0, 0]],
]


def test_palette_indices_are_looked_up() -> None:
    assert decode_image(_encode(_palette_image(), "PNG")).tolist() == PALETTE_RGB


def test_palette_transparent_index_keeps_its_colour() -> None:
    data = _encode(_palette_image(transparent_index=1), "PNG")
    assert Image.open(io.BytesIO(data)).info["transparency"] == 1
    assert decode_image(data).tolist() == PALETTE_RGB


def test_rgba_alpha_is_dropped_not_composited() -> None:
    rgb = _pattern()
    alpha = np.tile(np.array([0, 128, 255], np.uint8), 20)[:60].reshape(6, 10)
    np.testing.assert_array_equal(decode_image(_encode(np.dstack([rgb, alpha]), "PNG")), rgb)


CMYK_INKS = np.array([[[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 255],
                       [0, 0, 0, 0]]], np.uint8)  # fmt: skip
INK_RGB = [[[0, 255, 255], [255, 0, 255], [255, 255, 0], [0, 0, 0], [255, 255, 255]]]


def test_cmyk_tiff_inks_become_their_rgb_colours() -> None:
    data = _encode(Image.fromarray(CMYK_INKS, "CMYK"), "TIFF")
    assert decode_image(data).tolist() == INK_RGB


def test_cmyk_jpeg_inks_become_their_rgb_colours() -> None:
    data = _encode(Image.fromarray(CMYK_INKS, "CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert np.abs(decode_image(data).astype(int) - INK_RGB).max() <= 8


def test_ycbcr_tiff_is_converted_to_rgb() -> None:
    rgb = _blocky()
    data = _encode(Image.fromarray(rgb).convert("YCbCr"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "YCbCr"
    assert np.abs(decode_image(data).astype(int) - rgb).max() <= 3


def test_16_bit_gray_png_keeps_the_high_byte() -> None:
    every_value = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    data = cv2.imencode(".png", every_value)[1].tobytes()
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    image = decode_image(data)
    np.testing.assert_array_equal(image[:, :, 0], every_value >> 8)  # not clipped at 255
    assert (image == image[:, :, :1]).all()


def test_16_bit_rgb_png_keeps_the_high_byte() -> None:
    rgb16 = np.random.default_rng(3).integers(0, 65536, (7, 9, 3), dtype=np.uint16)
    rgb16[0, 0] = (0x00FF, 0x7F80, 0xFFFF)  # high bytes 0, 127, 255: truncated, not rounded
    data = cv2.imencode(".png", rgb16[:, :, ::-1])[1].tobytes()  # OpenCV writes BGR
    image = decode_image(data)
    np.testing.assert_array_equal(image, rgb16 >> 8)
    assert image[0, 0].tolist() == [0, 127, 255]


def test_16_bit_gray_tiff_keeps_the_high_byte() -> None:
    gray16 = np.array([[0, 255, 256, 0x7FFF, 0x8000, 0xFFFF]], np.uint16)
    image = decode_image(_encode(Image.fromarray(gray16), "TIFF"))
    assert image[0, :, 0].tolist() == [0, 0, 1, 127, 128, 255]


def test_32_bit_signed_tiff_is_scaled_by_the_range_of_int32() -> None:
    values = np.array([[-(2**31), -1, 0, 2**31 - 1]], np.int32)
    data = _encode(Image.fromarray(values), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    assert decode_image(data)[0, :, 0].tolist() == [0, 127, 128, 255]


def test_32_bit_unsigned_tiff_is_scaled_by_the_range_of_uint32() -> None:
    bits = np.array([[0, 2**24 - 1, 2**24, 2**31 - 1, -1]], np.int32)  # -1: 0xFFFFFFFF
    unsigned = _set_tiff_tag(_encode(Image.fromarray(bits), "TIFF"), 339, 1)  # SampleFormat
    assert decode_image(unsigned)[0, :, 0].tolist() == [0, 0, 1, 127, 255]


def test_float_tiff_is_taken_as_0_to_1() -> None:
    values = np.array([[-0.5, 0.0, 0.5, 1.0, 7.0, np.nan]], np.float32)
    data = _encode(Image.fromarray(values), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    assert decode_image(data)[0, :, 0].tolist() == [0, 0, 128, 255, 255, 0]


@pytest.mark.parametrize(("fmt", "options"), [("WEBP", {"lossless": True}), ("TIFF", {})])
def test_multi_frame_file_gives_its_first_frame(fmt: str, options: dict[str, object]) -> None:
    frames = [Image.fromarray(_pattern(seed=seed)) for seed in (0, 1, 2)]
    data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:], **options)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    np.testing.assert_array_equal(decode_image(data), _pattern(seed=0))


# --------------------------------------------------------------------------- refused bytes


def test_empty_bytes_are_refused() -> None:
    with pytest.raises(ImageError, match=r"empty \(0 bytes\)"):
        decode_image(b"")


def test_random_garbage_is_refused() -> None:
    garbage = np.random.default_rng(4).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    with pytest.raises(ImageError, match="not a JPEG, PNG, BMP, WebP or TIFF file"):
        decode_image(garbage)


def test_text_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("id,label\n1,cat\n")
    with pytest.raises(ImageError, match="cannot decode image"):
        decode_image(path.read_bytes())


def test_gif_is_refused_by_name() -> None:
    data = _encode(Image.fromarray(_pattern()).convert("P"), "GIF")
    assert Image.open(io.BytesIO(data)).format == "GIF"  # Pillow could read it, we do not
    with pytest.raises(ImageError, match="GIF is not supported"):
        decode_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_refused(fmt: str) -> None:
    data = _encode(_pattern(64, 64), fmt)
    with pytest.raises(ImageError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_image_without_pixels_is_refused() -> None:
    with pytest.raises(ImageError):
        decode_image(_png_declaring(0, 5))


def test_refusals_are_detect_errors_with_a_one_line_message() -> None:
    with pytest.raises(DetectError) as caught:
        decode_image(b"\x89PNG\r\n\x1a\n")
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- pixel limit


def test_image_at_the_pixel_limit_is_accepted_and_one_over_is_refused() -> None:
    data = _encode(_pattern(30, 40), "PNG")
    assert decode_image(data, max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(ImageError, match=r"40x30 = 0.0012 MP, over the 0.001199 MP limit"):
        decode_image(data, max_pixels=1199)


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    data = _png_declaring(9000, 9000)  # no pixel data: decoding would fail as truncated
    with pytest.raises(ImageError, match=r"9000x9000 = 81.0 MP, over the 50 MP limit"):
        decode_image(data)


def test_header_over_pillows_own_bomb_limit_is_refused() -> None:
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match=r"400.0 MP, over Pillow's decompression-bomb limit"):
        decode_image(_png_declaring(20000, 20000), max_pixels=10**9)
    assert limit == Image.MAX_IMAGE_PIXELS


def test_decompression_bomb_is_refused_fast_without_warnings() -> None:
    bomb = _encode(Image.new("1", (10000, 10000)), "PNG")  # 100 MP in about 12 KB
    assert len(bomb) < 50_000 and DEFAULT_MAX_PIXELS == 50_000_000
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        with pytest.raises(ImageError, match=r"10000x10000 = 100.0 MP, over the 50 MP limit"):
            decode_image(bomb)
        elapsed = time.perf_counter() - start
    assert elapsed < 0.25  # decoding it takes about 1 s and 300 MB
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert warnings.filters == filters


# --------------------------------------------------------------------------- raw arrays


def test_rgb_array_is_copied_unchanged() -> None:
    rgb = _pattern()
    image = array_to_rgb(rgb, "RGB")
    np.testing.assert_array_equal(image, rgb)
    assert not np.shares_memory(image, rgb)


def test_bgr_array_is_reordered_to_rgb() -> None:
    rgb = _pattern()
    image = array_to_rgb(np.ascontiguousarray(rgb[:, :, ::-1]), "BGR")
    np.testing.assert_array_equal(image, rgb)
    assert image.flags.c_contiguous


@pytest.mark.parametrize("shape", [(6, 10), (6, 10, 1)])
def test_gray_array_is_repeated_into_three_channels(shape: tuple[int, ...]) -> None:
    gray = _pattern()[:, :, 0]
    image = array_to_rgb(gray.reshape(shape), "BGR")  # the order does not matter for gray
    np.testing.assert_array_equal(image, np.repeat(gray[:, :, None], 3, axis=2))


@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_four_channel_array_drops_the_alpha(color: str) -> None:
    rgb = _pattern()
    colour = rgb if color == "RGB" else rgb[:, :, ::-1]
    four = np.dstack([colour, np.full((6, 10), 7, np.uint8)])
    np.testing.assert_array_equal(array_to_rgb(four, color), rgb)


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_uint16_array_keeps_the_high_byte(byte_order: str) -> None:
    rgb16 = np.random.default_rng(5).integers(0, 65536, (4, 5, 3)).astype(f"{byte_order}u2")
    np.testing.assert_array_equal(array_to_rgb(rgb16, "RGB"), (rgb16 >> 8).astype(np.uint8))


def test_non_contiguous_array_is_accepted() -> None:
    rgb = _pattern(12, 20)
    view = rgb[::2, ::2]
    image = array_to_rgb(view, "RGB")
    np.testing.assert_array_equal(image, view)
    assert image.flags.c_contiguous


@pytest.mark.parametrize("color", ["rgb", "RGBA", "GRAY", "", None])
def test_unknown_channel_order_is_refused(color: object) -> None:
    with pytest.raises(ImageError, match="color must be 'RGB' or 'BGR'"):
        array_to_rgb(_pattern(), color)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(10,), (6, 10, 2), (6, 10, 5), (1, 6, 10, 3)])
def test_array_of_another_shape_is_refused(shape: tuple[int, ...]) -> None:
    expected = "x".join(map(str, shape))
    with pytest.raises(ImageError, match=rf"shape {expected}; expected \(H, W\)"):
        array_to_rgb(np.zeros(shape, np.uint8), "RGB")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int32, np.uint32, bool])
def test_array_of_another_dtype_is_refused(dtype: type) -> None:
    with pytest.raises(ImageError, match=r"dtype .*; expected uint8 or uint16"):
        array_to_rgb(np.zeros((6, 10, 3), dtype), "RGB")


def test_empty_array_is_refused() -> None:
    with pytest.raises(ImageError, match="10x0, it has no pixels"):
        array_to_rgb(np.zeros((0, 10, 3), np.uint8), "RGB")


def test_array_over_the_pixel_limit_is_refused() -> None:
    with pytest.raises(ImageError, match=r"10x6 = 6e-05 MP, over the 5.9e-05 MP limit"):
        array_to_rgb(_pattern(), "RGB", max_pixels=59)


def test_non_array_is_refused() -> None:
    with pytest.raises(ImageError, match="NumPy array, got list"):
        array_to_rgb([[0, 0, 0]], "RGB")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- serving path


def test_imports_and_decodes_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
        "import io; from PIL import Image; from detect.runtime.image import decode_image\n"
        "b = io.BytesIO(); Image.new('RGB', (3, 2), (1, 2, 3)).save(b, 'PNG')\n"
        "assert decode_image(b.getvalue()).tolist() == [[[1, 2, 3]] * 3] * 2"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
