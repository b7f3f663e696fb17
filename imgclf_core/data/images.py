"""The one decode function: bytes, a path or a file object -> a uint8 array.

Training, evaluation, prediction, Grad-CAM, thumbnails and the scanner all go through
`decode_image` / `decode_image_with_info`, so a pixel is the same wherever it is used.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Union

from imgclf_core.config import COLOR_MODES

# numpy and Pillow are bound by _import_decoders() when the first image is read, not imported here:
# every app page imports this module (through the scanner and the configs) before it draws its
# title, and the two cost a few tenths of a second on a busy machine.
if TYPE_CHECKING:
    import numpy as np
    from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

# Formats we decode (phone MPO files open through JPEG). Everything else is refused with a
# reason, even when Pillow could read it.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")
# File-name endings of those formats, for file pickers and inbox listings (decoding goes by content).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
# 64 megapixels covers phone and DSLR photos; a bigger header is far more often a bomb.
DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
WHITE = (255, 255, 255)
# Pillow modes without colour: bilevel, 8-bit, 16-bit (either byte order), 32-bit integer and float grey, and
# grey with alpha (composited onto the background when decoded). A dataset of only these trains in grayscale
# by default, and none of them can be a grey image stored as colour.
GRAYSCALE_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# EXIF orientations that transpose the stored pixels (width and height trade places when applied).
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
_ORIENTATION_TAG = 0x0112

# Reasons a file is not used. Stable strings: the UI, the CLI JSON and the tests use them.
EMPTY_FILE = "empty file"
FILE_TOO_LARGE = "file too large"
NOT_AN_IMAGE = "not an image"
UNSUPPORTED_FORMAT = "unsupported format"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
TOO_MANY_PIXELS = "too many pixels"
UNREADABLE = "unreadable"

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

_decoders_imported = False


def _import_decoders() -> None:
    """Bind numpy and Pillow as this module's globals (the helpers below use them); once, thread-safe.

    Every public function that decodes calls it first; after the first call it is one flag check.
    """
    global np, Image, ImageOps, JpegImagePlugin, UnidentifiedImageError, _decoders_imported
    if _decoders_imported:
        return
    import numpy as np
    from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

    _decoders_imported = True  # last, so another thread never sees the flag before every name is bound


class ImageDecodeError(ValueError):
    """A file that is not a usable image; `reason` is one of the module's reason strings."""

    def __init__(self, reason: str, detail: str = ""):
        # Details quote file contents (a format brand, a decoder message): keep the message one printable line.
        detail = "".join(character if character.isprintable() else "?" for character in detail)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class ImageInfo:
    """What the file was before decoding: format, size (after EXIF rotation), mode, frames."""

    format: str
    width: int
    height: int
    mode: str
    frames: int


@dataclass(frozen=True)
class DecodedImage:
    array: np.ndarray
    info: ImageInfo


def read_image_bytes(source: ImageSource, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read the raw bytes of a path, bytes-like or file object, refusing oversized input."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            status = path.stat()
            if not stat.S_ISREG(status.st_mode):
                # A FIFO blocks the read forever and /dev/zero never ends: only regular files are read.
                raise ImageDecodeError(UNREADABLE, "not a regular file")
            size = status.st_size
            if size > max_bytes:
                raise ImageDecodeError(FILE_TOO_LARGE, f"{size} bytes, limit {max_bytes}")
            data = path.read_bytes()
        except ImageDecodeError:
            raise
        except OSError as error:
            raise ImageDecodeError(UNREADABLE, error.strerror or str(error)) from error
    else:
        data = source.read(max_bytes + 1)
    if not data:
        raise ImageDecodeError(EMPTY_FILE)
    if len(data) > max_bytes:
        raise ImageDecodeError(FILE_TOO_LARGE, f"more than {max_bytes} bytes")
    return data


def decode_image(
    source: ImageSource,
    *,
    color_mode: str = "rgb",
    size: int | tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    background: tuple[int, int, int] = WHITE,
    reduced_jpeg_decode: bool = True,
    max_side: int | None = None,
) -> np.ndarray:
    """Decode an image to uint8 (H, W, 3) for rgb or (H, W, 1) for grayscale; raises ImageDecodeError."""
    return decode_image_with_info(
        source, color_mode=color_mode, size=size, max_pixels=max_pixels, max_bytes=max_bytes,
        background=background, reduced_jpeg_decode=reduced_jpeg_decode, max_side=max_side,
    ).array


def decode_image_with_info(
    source: ImageSource,
    *,
    color_mode: str = "rgb",
    size: int | tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    background: tuple[int, int, int] = WHITE,
    reduced_jpeg_decode: bool = True,
    max_side: int | None = None,
) -> DecodedImage:
    """Like `decode_image`, and also say what the file was (format, size, mode, frames).

    `size` resizes to exactly that; `max_side` instead shrinks, keeping the aspect ratio, an image
    whose longer side is above it (thumbnails, display). With `reduced_jpeg_decode`, a JPEG at least
    twice the wanted size is decoded by libjpeg at 1/2, 1/4 or 1/8 scale (never below it), then
    resized as usual; False decodes at full size.
    """
    _import_decoders()
    if color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {COLOR_MODES}, got {color_mode!r}")
    if size is not None and max_side is not None:
        raise ValueError("give size or max_side, not both")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive int, got {max_side!r}")
    height_width = _height_width(size)
    data = read_image_bytes(source, max_bytes)
    with _open_checked(data, max_pixels) as image:
        if max_side is not None:
            height_width = _fit_within(image, max_side)
        draft_height_width = height_width if reduced_jpeg_decode else None
        converted, info = _load_upright(image, color_mode, background, draft_height_width)
        if height_width is not None:
            converted = converted.resize((height_width[1], height_width[0]), Image.Resampling.BILINEAR)
        array = np.asarray(converted, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return DecodedImage(np.ascontiguousarray(array), info)


def inspect_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    reduced_jpeg_decode: bool = True,
) -> ImageInfo:
    """Check a file as a decode would (same errors, same ImageInfo), decoding a JPEG at 1/8 scale."""
    _import_decoders()
    data = read_image_bytes(source, max_bytes)
    with _open_checked(data, max_pixels) as image:
        # libjpeg still reads the whole entropy-coded stream at 1/8 scale, so truncation and damage
        # surface as in a full decode; only the inverse DCT and the pixels written are smaller.
        smallest = (1, 1) if reduced_jpeg_decode else None
        return _load_upright(image, "rgb", WHITE, smallest)[1]


def _fit_within(image: Image.Image, max_side: int) -> tuple[int, int] | None:
    """The upright (height, width) with the longer side at most max_side, aspect kept; None if it fits."""
    width, height = image.size
    if _exif_orientation(image) in TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    scale = max_side / max(width, height)
    if scale >= 1:
        return None
    return max(1, round(height * scale)), max(1, round(width * scale))


def _height_width(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    height_width = (size, size) if isinstance(size, int) else tuple(size)
    if len(height_width) != 2 or min(height_width) < 1:
        raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
    return height_width


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Open an allowed format and refuse too many pixels from the header, before any pixel is decoded."""
    image = _open_allowed(data)
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageDecodeError(
            TOO_MANY_PIXELS, f"{width}x{height} is {width * height} pixels, limit {max_pixels}"
        )
    return image


def _load_upright(
    image: Image.Image,
    color_mode: str,
    background: tuple[int, int, int],
    draft_height_width: tuple[int, int] | None,
) -> tuple[Image.Image, ImageInfo]:
    """Load the first frame (a JPEG drafted down to draft_height_width), count frames, apply EXIF, convert."""
    _seek_first_frame(image)
    # The file's own size, before a draft shrinks the image object: ImageInfo describes the file.
    stored_width, stored_height = image.size
    if draft_height_width is not None:
        _draft_jpeg(image, draft_height_width)
    _load_first_frame(image)
    info_format, info_mode = image.format, image.mode
    frames = _count_frames(image)
    upright, swapped = _apply_exif_orientation(image)
    converted = _to_rgb_or_l(upright, color_mode, background)
    width, height = (stored_height, stored_width) if swapped else (stored_width, stored_height)
    return converted, ImageInfo(info_format, width, height, info_mode, frames)


def _draft_jpeg(image: Image.Image, height_width: tuple[int, int]) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while the upright image stays >= height_width."""
    if not isinstance(image, JpegImagePlugin.JpegImageFile):
        return
    target_height, target_width = height_width
    if _exif_orientation(image) in TRANSPOSING_ORIENTATIONS:
        # Stored sideways: the stored width becomes the upright height.
        target_width, target_height = target_height, target_width
    # Mode None: the decoder's colour output stays as in a full decode, so conversion is unchanged.
    image.draft(None, (target_width, target_height))


def _exif_orientation(image: Image.Image) -> object:
    """The Orientation tag as stored (compared as exif_transpose compares it), 1 when unreadable."""
    try:
        return image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block leaves the pixels as stored
        return 1


def _open_allowed(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(TOO_MANY_PIXELS, str(error)) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        open_error = error
    signature_format = _allowed_format_by_signature(data)
    if signature_format:
        # The magic bytes say JPEG/PNG/..., yet the header did not parse: a cut-off or damaged file.
        message = str(open_error) or type(open_error).__name__
        reason = TRUNCATED if len(data) < 1024 or "truncat" in message else CORRUPT
        raise ImageDecodeError(reason, f"{signature_format} header unreadable ({message})")
    other_format = _name_other_format(data)
    if other_format:
        raise ImageDecodeError(UNSUPPORTED_FORMAT, other_format)
    raise ImageDecodeError(NOT_AN_IMAGE, "no known image signature")


_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _allowed_format_by_signature(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    return None


def _name_other_format(data: bytes) -> str | None:
    """Name an image format we do not accept, so the reason says what the file is."""
    head = data[:512].lstrip()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096]):
        return "SVG"
    if data[4:8] == b"ftyp":
        brand = data[8:12].decode("ascii", "replace")
        return "HEIF/HEIC" if brand.startswith(("hei", "hev", "mif", "msf")) else f"ISO media ({brand})"
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except Exception:  # noqa: BLE001 - any failure here just means "not an image we can name"
        return None


def _seek_first_frame(image: Image.Image) -> None:
    # Before any draft: moving an MPO to another frame re-reads that frame's header and drops a draft.
    try:
        image.seek(0)
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(TOO_MANY_PIXELS, str(error)) from error
    except _DAMAGED_DATA_ERRORS as error:
        raise _damaged_data_error(error) from error


def _load_first_frame(image: Image.Image) -> None:
    try:
        image.load()
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(TOO_MANY_PIXELS, str(error)) from error
    except _DAMAGED_DATA_ERRORS as error:
        raise _damaged_data_error(error) from error


def _count_frames(image: Image.Image) -> int:
    """Frames in the file. Counting reads every frame header, so a damaged later frame fails here."""
    try:
        return getattr(image, "n_frames", 1)
    except _DAMAGED_DATA_ERRORS as error:
        # Pillow's frame walk runs off the end of a cut-off GIF as IndexError or struct.error.
        raise _damaged_data_error(error, out_of_data=(EOFError, IndexError, struct.error)) from error


# What Pillow raises on damaged pixel data or frame headers (a bad later TIFF page: KeyError, TypeError).
_DAMAGED_DATA_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error)


def _damaged_data_error(error: Exception, out_of_data: tuple[type, ...] = (EOFError,)) -> ImageDecodeError:
    message = str(error) or type(error).__name__
    is_truncated = isinstance(error, out_of_data) or "truncat" in message or "end of file" in message
    return ImageDecodeError(TRUNCATED if is_truncated else CORRUPT, message)


def _apply_exif_orientation(image: Image.Image) -> tuple[Image.Image, bool]:
    """The upright image, and whether width and height traded places."""
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block leaves the pixels as stored
        return image, False
    return upright, _exif_orientation(image) in TRANSPOSING_ORIENTATIONS


def _to_rgb_or_l(image: Image.Image, color_mode: str, background: tuple[int, int, int]) -> Image.Image:
    image = _to_8bit(image)
    if image.mode == "P" or image.mode == "PA":
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    if image.mode in ("LA", "La", "RGBA", "RGBa"):
        image = _composite_on(image.convert("RGBA"), background)
    target = "RGB" if color_mode == "rgb" else "L"
    return image if image.mode == target else image.convert(target)


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float images to 8 bits; Pillow's convert would clip them."""
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image).astype(np.float64)
        full_scale = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) <= 65535 else 2.0**32 - 1
        scaled = np.clip(np.round(values / full_scale * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled)
    if image.mode == "F":
        with np.errstate(invalid="ignore"):  # a signalling NaN warns on the float64 cast alone
            values = np.asarray(image).astype(np.float64)
        # Float files may hold NaN (no data, or damaged bytes): casting NaN to uint8 is undefined, so it becomes 0.
        values[np.isnan(values)] = 0.0
        if values.max(initial=0) <= 1.0:
            values = values * 255.0
        return Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8))
    if image.mode == "1":
        return image.convert("L")
    return image


def _composite_on(rgba: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    base = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")
