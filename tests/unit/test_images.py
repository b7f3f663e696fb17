"""The one decode function, on real files written to tmp_path: exact reasons, exact pixels."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf_core.data import images
from imgclf_core.data.images import ImageDecodeError, decode_image, decode_image_with_info

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


# ---------------------------------------------------------------- file makers


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def encode_frames(colors: list[tuple[int, int, int]], image_format: str, **options) -> bytes:
    frames = [Image.new("RGB", (8, 6), color) for color in colors]
    return encode(frames[0], image_format, save_all=True, append_images=frames[1:], **options)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def random_rgb(height: int, width: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming width x height (8-bit grey), a tiny IDAT and IEND.

    Built by hand: saving Image.new("L", (20000, 20000)) with Pillow also works but allocates
    400 MB and takes seconds; the decoder must refuse on the header alone anyway.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def gif_image_descriptor_offsets(data: bytes) -> list[int]:
    """Offsets of the ',' image descriptors of a GIF (one per frame), by walking its blocks."""
    position = 13
    if data[10] & 0x80:
        position += 3 * 2 ** ((data[10] & 0x07) + 1)
    offsets = []
    while position < len(data) and data[position] != 0x3B:
        if data[position] == 0x21:  # extension: label, then sub-blocks
            position += 2
        else:  # 0x2C image descriptor (+ local colour table) + LZW code size, then sub-blocks
            offsets.append(position)
            flags = data[position + 9]
            position += 10 + (3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0) + 1
        while data[position] != 0:
            position += data[position] + 1
        position += 1
    return offsets


def tiff_with_bad_second_page() -> bytes:
    """A 3-page TIFF whose second page lost its ImageWidth tag (page 0 itself is fine)."""
    data = bytearray(encode_frames([RED, GREEN, BLUE], "TIFF"))
    first_ifd = struct.unpack_from("<I", data, 4)[0]
    entry_count = struct.unpack_from("<H", data, first_ifd)[0]
    second_ifd = struct.unpack_from("<I", data, first_ifd + 2 + 12 * entry_count)[0]
    for index in range(struct.unpack_from("<H", data, second_ifd)[0]):
        entry = second_ifd + 2 + 12 * index
        if struct.unpack_from("<H", data, entry)[0] == 256:
            struct.pack_into("<H", data, entry, 0x9999)
    return bytes(data)


def cut_in_second_gif_frame_header(extra: int) -> bytes:
    data = encode_frames([RED, GREEN, BLUE], "GIF")
    second_frame = gif_image_descriptor_offsets(data)[1]
    return data[: second_frame + extra]


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def decode_error(source, **options) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(source, **options)
    return caught.value


def is_color(pixel, color, tolerance: int = 0) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, dtype=int) - np.asarray(color)) <= tolerance))


# ---------------------------------------------------------------- files that are not usable

BROKEN_FILES = [
    # name, bytes maker, reason, exact detail (None: not checked)
    ("empty.jpg", lambda: b"", images.EMPTY_FILE, ""),
    ("notes.jpg", lambda: b"hello, I am a text file with an image name\n", images.NOT_AN_IMAGE, None),
    ("half.jpg", lambda: half(encode(random_rgb(64, 64), "JPEG", quality=90)), images.TRUNCATED, None),
    ("half.png", lambda: half(encode(random_rgb(64, 64), "PNG")), images.TRUNCATED, None),
    ("header_cut.jpg", lambda: encode(random_rgb(64, 64), "JPEG")[:10], images.TRUNCATED, None),
    ("header_cut.png", lambda: encode(random_rgb(64, 64), "PNG")[:20], images.TRUNCATED, None),
    ("no_end.jpg", lambda: encode(random_rgb(64, 64), "JPEG")[:-200], images.TRUNCATED, None),
    ("drawing.svg", lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>',
     images.UNSUPPORTED_FORMAT, "SVG"),
    ("drawing_xml.jpg", lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
     images.UNSUPPORTED_FORMAT, "SVG"),
    ("icon.ico", lambda: encode(Image.new("RGB", (32, 32), RED), "ICO"), images.UNSUPPORTED_FORMAT, "ICO"),
    ("image.ppm", lambda: encode(Image.new("RGB", (8, 8), RED), "PPM"), images.UNSUPPORTED_FORMAT, "PPM"),
    ("image.tga", lambda: encode(Image.new("RGB", (8, 8), RED), "TGA"), images.UNSUPPORTED_FORMAT, "TGA"),
    ("photo.heic", lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64),
     images.UNSUPPORTED_FORMAT, "HEIF/HEIC"),
    # Regression: counting frames walks every frame header; a cut or damaged later frame used to
    # escape as a bare IndexError / struct.error / TypeError and crash the whole scan.
    ("cut_in_frame_1_a.gif", lambda: cut_in_second_gif_frame_header(1), images.TRUNCATED, None),
    ("cut_in_frame_1_b.gif", lambda: cut_in_second_gif_frame_header(5), images.TRUNCATED, None),
    ("cut_in_frame_1_c.gif", lambda: cut_in_second_gif_frame_header(9), images.TRUNCATED, None),
    ("bad_page_1.tif", tiff_with_bad_second_page, images.CORRUPT, None),
]


@pytest.mark.parametrize(
    "name, make, reason, detail", BROKEN_FILES, ids=[case[0] for case in BROKEN_FILES]
)
def test_unusable_file_gives_exact_reason(tmp_path, name, make, reason, detail):
    path = write(tmp_path, name, make())
    error = decode_error(path)
    assert error.reason == reason
    if detail is not None:
        assert error.detail == detail
    assert str(error) == (f"{reason}: {error.detail}" if error.detail else reason)


def test_missing_file_and_folder_are_unreadable(tmp_path):
    assert decode_error(tmp_path / "missing.png").reason == images.UNREADABLE
    assert decode_error(tmp_path).reason == images.UNREADABLE


@pytest.mark.parametrize("kind", ["path", "bytes", "file"])
def test_max_bytes_is_honoured_for_every_source(tmp_path, kind):
    data = encode(random_rgb(16, 16), "PNG")
    path = write(tmp_path, "a.png", data)
    source = {"path": path, "bytes": data, "file": io.BytesIO(data)}[kind]
    assert decode_error(source, max_bytes=len(data) - 1).reason == images.FILE_TOO_LARGE
    allowed = {"path": path, "bytes": data, "file": io.BytesIO(data)}[kind]
    assert decode_image(allowed, max_bytes=len(data)).shape == (16, 16, 3)


def test_unknown_color_mode_is_a_plain_value_error(tmp_path):
    path = write(tmp_path, "a.png", encode(random_rgb(4, 4), "PNG"))
    with pytest.raises(ValueError, match="color_mode") as caught:
        decode_image(path, color_mode="rgba")
    assert not isinstance(caught.value, ImageDecodeError)


# ---------------------------------------------------------------- decompression bombs


def test_decompression_bomb_is_refused_from_the_header_quickly(tmp_path):
    path = write(tmp_path, "bomb.png", png_header_only(20000, 20000))
    assert path.stat().st_size < 200
    started = time.perf_counter()
    error = decode_error(path)
    assert time.perf_counter() - started < 0.5
    assert error.reason == images.TOO_MANY_PIXELS
    assert "400000000" in error.detail


def test_header_over_default_limit_but_under_pillows_is_refused_by_ours(tmp_path):
    # 72 Mpx: above DEFAULT_MAX_PIXELS (64 Mpx), below Pillow's own warning (89 Mpx).
    path = write(tmp_path, "big.png", png_header_only(9000, 8000))
    error = decode_error(path)
    assert error.reason == images.TOO_MANY_PIXELS
    assert error.detail == f"9000x8000 is 72000000 pixels, limit {images.DEFAULT_MAX_PIXELS}"


@pytest.mark.parametrize("max_pixels, accepted", [(4999, False), (5000, True), (1_000_000, True)])
def test_max_pixels_is_honoured(tmp_path, max_pixels, accepted):
    path = write(tmp_path, "wide.png", encode(random_rgb(50, 100), "PNG"))
    if accepted:
        assert decode_image(path, max_pixels=max_pixels).shape == (50, 100, 3)
    else:
        error = decode_error(path, max_pixels=max_pixels)
        assert error.reason == images.TOO_MANY_PIXELS
        assert error.detail == f"100x50 is 5000 pixels, limit {max_pixels}"


# ---------------------------------------------------------------- modes and exact pixels


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    ramp = np.arange(65536, dtype=np.uint32).reshape(256, 256).astype(np.uint16)
    path = write(tmp_path, "deep.png", encode(Image.fromarray(ramp), "PNG"))
    decoded = decode_image_with_info(path, color_mode="grayscale")
    expected = np.round(ramp.astype(np.float64) / 65535 * 255).astype(np.uint8)
    assert decoded.info.mode == "I;16"
    assert decoded.array.shape == (256, 256, 1)
    np.testing.assert_array_equal(decoded.array[:, :, 0], expected)
    assert len(np.unique(decoded.array)) == 256
    rgb = decode_image(path)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], expected)


@pytest.mark.parametrize(
    "cmyk, rgb",
    [((0, 255, 255, 0), RED), ((255, 0, 255, 0), GREEN), ((255, 255, 0, 0), BLUE),
     ((0, 0, 0, 0), WHITE), ((0, 0, 0, 255), BLACK)],
)
def test_cmyk_jpeg_pure_colours_round_trip(tmp_path, cmyk, rgb):
    path = write(tmp_path, "print.jpg", encode(Image.new("CMYK", (16, 16), cmyk), "JPEG", quality=95))
    decoded = decode_image_with_info(path)
    assert decoded.info.mode == "CMYK"
    assert decoded.array.shape == (16, 16, 3)
    assert all(is_color(pixel, rgb, tolerance=3) for pixel in decoded.array.reshape(-1, 3))


def palette_image() -> Image.Image:
    image = Image.new("P", (4, 1))
    image.putpalette([*RED, *GREEN, *BLUE, 10, 20, 30])
    image.putdata([0, 1, 2, 3])
    return image


def test_palette_png_gives_exact_rgb(tmp_path):
    path = write(tmp_path, "palette.png", encode(palette_image(), "PNG"))
    decoded = decode_image_with_info(path)
    assert decoded.info.mode == "P"
    assert decoded.array.tolist() == [[list(RED), list(GREEN), list(BLUE), [10, 20, 30]]]


@pytest.mark.parametrize("image_format", ["PNG", "GIF"])
def test_palette_transparent_index_becomes_background(tmp_path, image_format):
    path = write(tmp_path, f"palette.{image_format.lower()}", encode(palette_image(), image_format, transparency=1))
    assert decode_image(path).tolist() == [[list(RED), list(WHITE), list(BLUE), [10, 20, 30]]]
    assert decode_image(path, background=BLACK).tolist() == [[list(RED), list(BLACK), list(BLUE), [10, 20, 30]]]


def test_palette_png_with_per_entry_alpha_is_composited(tmp_path):
    data = encode(palette_image(), "PNG", transparency=bytes([255, 0, 128, 255]))
    pixels = decode_image(write(tmp_path, "palette_alpha.png", data))
    assert pixels[0, 0].tolist() == list(RED)
    assert pixels[0, 1].tolist() == list(WHITE)
    assert is_color(pixels[0, 2], (127, 127, 255), tolerance=1)  # half-transparent blue over white
    assert pixels[0, 3].tolist() == [10, 20, 30]


def test_rgba_transparent_pixels_show_the_background_not_the_hidden_colour(tmp_path):
    pixels = np.zeros((2, 3, 4), np.uint8)
    pixels[0, 0] = (255, 0, 0, 0)  # fully transparent, stored as pure red
    pixels[0, 1] = (255, 0, 0, 128)  # half-transparent red
    pixels[0, 2] = (0, 0, 255, 255)  # opaque blue
    pixels[1, :] = (0, 0, 0, 0)  # fully transparent black
    path = write(tmp_path, "alpha.png", encode(Image.fromarray(pixels, "RGBA"), "PNG"))
    decoded = decode_image_with_info(path)
    assert decoded.info.mode == "RGBA"
    rgb = decoded.array
    assert rgb[0, 0].tolist() == list(WHITE)
    assert is_color(rgb[0, 1], (255, 127, 127), tolerance=1)
    assert rgb[0, 2].tolist() == list(BLUE)
    assert rgb[1].tolist() == [list(WHITE)] * 3
    assert decode_image(path, background=BLACK)[0, 0].tolist() == list(BLACK)
    gray = decode_image(path, color_mode="grayscale")
    assert gray[0, 0].tolist() == [255]
    assert gray[1].tolist() == [[255]] * 3


def test_la_png_is_composited_on_white(tmp_path):
    pixels = np.array([[[100, 0], [100, 255], [100, 128]]], np.uint8)
    path = write(tmp_path, "la.png", encode(Image.fromarray(pixels, "LA"), "PNG"))
    decoded = decode_image_with_info(path)
    assert decoded.info.mode == "LA"
    assert decoded.array[0, 0].tolist() == list(WHITE)
    assert decoded.array[0, 1].tolist() == [100, 100, 100]
    assert is_color(decoded.array[0, 2], (177, 177, 177), tolerance=1)
    assert decode_image(path, color_mode="grayscale")[0, :, 0].tolist()[:2] == [255, 100]


def test_one_bit_png_is_black_and_white(tmp_path):
    image = Image.new("1", (2, 1))
    image.putdata([0, 1])
    pixels = decode_image(write(tmp_path, "bits.png", encode(image, "PNG")))
    assert pixels.tolist() == [[list(BLACK), list(WHITE)]]


FOUR_COLOURS = np.array([[RED, GREEN], [BLUE, (10, 20, 30)]], np.uint8)


@pytest.mark.parametrize(
    "image_format, options",
    [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True}), ("GIF", {})],
)
def test_lossless_formats_round_trip_exactly(tmp_path, image_format, options):
    data = encode(Image.fromarray(FOUR_COLOURS), image_format, **options)
    decoded = decode_image_with_info(write(tmp_path, f"four.{image_format.lower()}", data))
    assert decoded.info.format == image_format
    assert (decoded.info.width, decoded.info.height, decoded.info.frames) == (2, 2, 1)
    np.testing.assert_array_equal(decoded.array, FOUR_COLOURS)


# ---------------------------------------------------------------- EXIF orientation

CORNERS = {"top-left": (0, 0), "top-right": (0, -1), "bottom-left": (-1, 0), "bottom-right": (-1, -1)}


def marked_image(orientation: int) -> tuple[Image.Image, bytes]:
    """40 wide, 20 high, blue with a red 8x8 block in the stored top-left corner; and its EXIF."""
    pixels = np.full((20, 40, 3), BLUE, np.uint8)
    pixels[:8, :8] = RED
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    return image, exif.tobytes()


@pytest.mark.parametrize(
    "image_format, orientation, shape, red_corner",
    [
        ("JPEG", 1, (20, 40, 3), "top-left"),
        ("JPEG", 6, (40, 20, 3), "top-right"),  # rotate 90 degrees clockwise to display
        ("PNG", 3, (20, 40, 3), "bottom-right"),
        ("PNG", 6, (40, 20, 3), "top-right"),
        ("PNG", 8, (40, 20, 3), "bottom-left"),
    ],
)
def test_exif_orientation_is_applied(tmp_path, image_format, orientation, shape, red_corner):
    image, exif = marked_image(orientation)
    options = {"quality": 95} if image_format == "JPEG" else {}
    data = encode(image, image_format, exif=exif, **options)
    decoded = decode_image_with_info(write(tmp_path, f"turned.{image_format.lower()}", data))
    assert decoded.array.shape == shape
    assert (decoded.info.height, decoded.info.width) == shape[:2]
    for corner, (row, column) in CORNERS.items():
        # Sample 3 pixels in from the corner so JPEG edge ringing does not matter.
        pixel = decoded.array[row + 3 if row == 0 else row - 3, column + 3 if column == 0 else column - 3]
        assert is_color(pixel, RED if corner == red_corner else BLUE, tolerance=12), corner


# ---------------------------------------------------------------- multi-frame files


@pytest.mark.parametrize(
    "image_format, colors, options",
    [
        ("GIF", [RED, GREEN, BLUE], {"duration": 100}),
        ("GIF", [BLUE, RED], {"duration": 100}),
        ("TIFF", [GREEN, RED, BLUE], {}),
        ("WEBP", [GREEN, BLUE], {"lossless": True}),
    ],
)
def test_first_frame_is_used_and_frames_are_counted(tmp_path, image_format, colors, options):
    path = write(tmp_path, f"frames.{image_format.lower()}", encode_frames(colors, image_format, **options))
    decoded = decode_image_with_info(path)
    assert decoded.info.format == image_format
    assert decoded.info.frames == len(colors)
    assert decoded.array.shape == (6, 8, 3)
    assert np.all(decoded.array == np.array(colors[0], np.uint8))


# ---------------------------------------------------------------- output shape, size, sources


@pytest.mark.parametrize("color_mode, channels", [("rgb", 3), ("grayscale", 1)])
def test_color_mode_gives_channels_last(tmp_path, color_mode, channels):
    path = write(tmp_path, "gray.png", encode(Image.new("RGB", (7, 5), (100, 100, 100)), "PNG"))
    array = decode_image(path, color_mode=color_mode)
    assert array.shape == (5, 7, channels)
    assert array.dtype == np.uint8
    assert array.flags["C_CONTIGUOUS"]
    assert np.all(array == 100)


@pytest.mark.parametrize(
    "size, color_mode, shape",
    [(16, "rgb", (16, 16, 3)), ((10, 20), "rgb", (10, 20, 3)), ((20, 10), "grayscale", (20, 10, 1)),
     (64, "grayscale", (64, 64, 1))],
)
def test_size_resizes_to_height_width(tmp_path, size, color_mode, shape):
    path = write(tmp_path, "photo.jpg", encode(random_rgb(30, 45), "JPEG"))
    decoded = decode_image_with_info(path, size=size, color_mode=color_mode)
    assert decoded.array.shape == shape
    assert (decoded.info.width, decoded.info.height) == (45, 30)  # info describes the file


def test_resizing_a_flat_colour_keeps_it(tmp_path):
    path = write(tmp_path, "flat.png", encode(Image.new("RGB", (33, 17), (12, 200, 77)), "PNG"))
    assert np.all(decode_image(path, size=(9, 50)) == np.array([12, 200, 77], np.uint8))


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_bytes_path_and_file_object_give_identical_arrays(tmp_path, image_format):
    data = encode(random_rgb(24, 32, seed=3), image_format)
    path = write(tmp_path, f"same.{image_format.lower()}", data)
    reference = decode_image(path)
    with open(path, "rb") as handle:
        from_open_file = decode_image(handle)
    sources = [str(path), data, bytearray(data), memoryview(data), io.BytesIO(data)]
    for array in [from_open_file, *(decode_image(source) for source in sources)]:
        np.testing.assert_array_equal(array, reference)
    if image_format == "PNG":
        np.testing.assert_array_equal(reference, np.asarray(random_rgb(24, 32, seed=3)))
