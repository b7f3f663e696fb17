"""Fuzz the one decode function with mutated JPEG/PNG/GIF/TIFF/WebP/BMP files for a fixed time.

    .venv/bin/python scripts/fuzz_decode.py --seconds 600 [--seed 1] [--time-limit 10]

Seeds are real photos (skimage.data) encoded small in every variant we accept (baseline and
progressive JPEG, CMYK, EXIF-rotated; 8/16-bit, palette, RGBA and interlaced PNG; still and
animated GIF and WebP; plain, compressed, 16-bit, float and multi-page TIFF; BMP; MPO) and in
formats we refuse (ICO, TGA, QOI, JPEG 2000, AVIF, ...). Each input is a seed with 1-4 mutations:
byte flips, truncation, chunk deletion/insertion/duplication, header fields (width, height,
depth, counts, offsets, lengths) and pixel samples set to extreme values, splices of two files.

Every input must decode to a uint8 array of the asked shape or raise ImageDecodeError with a
one-line message. Anything else is a failure: another exception, a numpy warning in our code
(an undefined cast), a crash of the decoding process, or a decode slower than --time-limit
seconds. Failures are printed and their bytes saved under --failures; the exit code is then 1.

Decoding runs in a child process, so a hang or a crash in Pillow's C code is caught and the run
goes on. The same seeds and mutations drive tests/robustness/test_fuzz.py (a bounded pass in pytest;
IMGCLF_FUZZ_EXAMPLES=20000 runs it longer, IMGCLF_FUZZ_RANDOM=1 with new inputs each time).
"""

from __future__ import annotations

import argparse
import functools
import io
import multiprocessing
import os
import random
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from pathlib import Path
from typing import Callable, Protocol, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEED_SIZE = 64
# Values that sit on the edges of 8/16/32-bit fields: where parsers overflow or divide by zero;
# then float32 NaN (quiet, signalling) and infinities, for float pixel data.
INTERESTING_VALUES = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                      0x7FC00000, 0x7FA00000, 0x7F800000, 0xFF800000)
HEADER_BYTES = 128


# ---------------------------------------------------------------- seeds


@functools.cache
def seed_files(size: int = SEED_SIZE) -> dict[str, bytes]:
    """Real photos encoded `size` px wide in every format and variant the decoder accepts, by file name."""
    import numpy as np
    from PIL import Image
    from skimage import data as skimage_data

    def photo(name: str) -> Image.Image:
        image = Image.fromarray(getattr(skimage_data, name)())
        return image.resize((size, max(1, round(size * image.height / image.width))), Image.Resampling.BILINEAR)

    chelsea, coffee, astronaut, camera = (photo(name) for name in ("chelsea", "coffee", "astronaut", "camera"))
    rgba = astronaut.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(astronaut.size))
    camera_16 = Image.fromarray((np.asarray(camera).astype(np.uint16) * 257))
    palette = coffee.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    frames = [chelsea, coffee.resize(chelsea.size), astronaut.resize(chelsea.size)]
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display

    def encode(image: Image.Image, image_format: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, image_format, **options)
        return buffer.getvalue()

    return {
        "chelsea.jpg": encode(chelsea, "JPEG", quality=85),
        "coffee-progressive.jpg": encode(coffee, "JPEG", quality=80, progressive=True),
        "camera-gray.jpg": encode(camera, "JPEG", quality=85),
        "astronaut-exif-rotated.jpg": encode(astronaut, "JPEG", quality=85, exif=exif.tobytes()),
        "coffee-cmyk.jpg": encode(coffee.convert("CMYK"), "JPEG", quality=85),
        "chelsea.png": encode(chelsea, "PNG"),
        "camera-16bit.png": encode(camera_16, "PNG"),
        "coffee-palette-transparent.png": encode(palette, "PNG", transparency=0),
        "astronaut-rgba.png": encode(rgba, "PNG"),
        "camera-interlaced.png": interlaced_png(np.asarray(camera)),
        "chelsea.gif": encode(chelsea.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
        "animated.gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "coffee.tif": encode(coffee, "TIFF"),
        "coffee-lzw.tif": encode(coffee, "TIFF", compression="tiff_lzw"),
        "camera-deflate.tif": encode(camera, "TIFF", compression="tiff_adobe_deflate"),
        "astronaut-rgba-packbits.tif": encode(rgba, "TIFF", compression="packbits"),
        "camera-16bit.tif": encode(camera_16, "TIFF"),
        "multipage.tif": encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "coffee-lossy.webp": encode(coffee, "WEBP", quality=70),
        "astronaut-lossless.webp": encode(rgba, "WEBP", lossless=True),
        "animated.webp": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100),
        "chelsea.bmp": encode(chelsea, "BMP"),
        "palette.bmp": encode(palette, "BMP"),
        "camera-1bit.bmp": encode(camera.convert("1"), "BMP"),
        "camera-float.tif": encode(Image.fromarray(np.asarray(camera, np.float32) / 255), "TIFF"),
        "camera-int32.tif": encode(Image.fromarray(np.asarray(camera, np.int32) * 257), "TIFF"),  # 16-bit values, 32-bit container
        "stereo.mpo": encode(chelsea, "MPO", save_all=True, append_images=[coffee.resize(chelsea.size)]),
        **refused_format_files(size),
    }


@functools.cache
def refused_format_files(size: int = SEED_SIZE) -> dict[str, bytes]:
    """A photo in formats Pillow reads but the decoder refuses (so the refusal path is fuzzed too)."""
    from PIL import Image, features
    from skimage import data as skimage_data

    image = Image.fromarray(skimage_data.coffee()).resize((size, size), Image.Resampling.BILINEAR)
    formats = {"icon.ico": "ICO", "coffee.tga": "TGA", "coffee.pcx": "PCX", "coffee.ppm": "PPM", "coffee.qoi": "QOI",
               "coffee.sgi": "SGI", "coffee.dds": "DDS"}
    if features.check("jpg_2000"):
        formats["coffee.jp2"] = "JPEG2000"
    if features.check("avif"):
        formats["coffee.avif"] = "AVIF"
    files = {}
    for name, image_format in formats.items():
        buffer = io.BytesIO()
        image.save(buffer, image_format)
        files[name] = buffer.getvalue()
    return files


# Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def interlaced_png(gray) -> bytes:
    """An Adam7-interlaced 8-bit grey PNG (Pillow only writes non-interlaced ones)."""
    height, width = gray.shape
    rows = bytearray()
    for x0, y0, dx, dy in _ADAM7:
        for row in gray[y0::dy, x0::dx]:
            if row.size:
                rows += b"\x00" + row.tobytes()  # filter type 0 (none) on every row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- mutations


class Chooser(Protocol):
    """Where mutations get their choices: `random.Random` in this script, Hypothesis data in the tests."""

    def integer(self, low: int, high: int) -> int: ...

    def choice(self, options: Sequence): ...

    def raw_bytes(self, length: int) -> bytes: ...


class RandomChooser:
    """A Chooser backed by `random.Random` (fast; no shrinking)."""

    def __init__(self, seed: int | None = None):
        self.random = random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return self.random.randint(low, high)

    def choice(self, options: Sequence):
        return options[self.random.randrange(len(options))]

    def raw_bytes(self, length: int) -> bytes:
        return self.random.randbytes(length)


def _position(chooser: Chooser, data: bytearray) -> int:
    """An offset into `data`, half the time inside the header where the parsers make their decisions."""
    last = max(0, len(data) - 1)
    if chooser.integer(0, 1):
        return chooser.integer(0, min(last, HEADER_BYTES))
    return chooser.integer(0, last)


def flip_byte(chooser: Chooser, data: bytearray) -> bytearray:
    if data:
        data[_position(chooser, data)] ^= chooser.integer(1, 255)
    return data


def truncate(chooser: Chooser, data: bytearray) -> bytearray:
    return data[:chooser.integer(0, max(0, len(data) - 1))]


def delete_chunk(chooser: Chooser, data: bytearray) -> bytearray:
    start = _position(chooser, data)
    del data[start:start + chooser.integer(1, 256)]
    return data


def insert_random_chunk(chooser: Chooser, data: bytearray) -> bytearray:
    start = _position(chooser, data)
    data[start:start] = chooser.raw_bytes(chooser.integer(1, 64))
    return data


def duplicate_chunk(chooser: Chooser, data: bytearray) -> bytearray:
    """Copy a slice of the file elsewhere, up to 8 times (repeated markers, frames, IFD entries)."""
    start = _position(chooser, data)
    piece = bytes(data[start:start + chooser.integer(1, 512)])
    where = chooser.integer(0, len(data))
    data[where:where] = piece * chooser.integer(1, 8)
    return data


def write_interesting_value(chooser: Chooser, data: bytearray) -> bytearray:
    return _write_field(chooser, data, _position(chooser, data), chooser.choice((1, 2, 4)), chooser.choice(("big", "little")))


def write_sample_values(chooser: Chooser, data: bytearray) -> bytearray:
    """Overwrite 1-16 aligned words of the pixel data (past the header) with extreme values.

    Header damage mostly ends in Pillow's parsers; damaged sample values (16-bit, 32-bit, float)
    get through them and reach our own conversion to 8 bits.
    """
    width = chooser.choice((2, 4))
    byteorder = "little" if data.startswith(b"II") else "big"
    first = min(len(data), HEADER_BYTES) // width
    if len(data) // width <= first:
        return data
    start = chooser.integer(first, len(data) // width - 1)
    for word in range(start, min(start + chooser.integer(1, 16), len(data) // width)):
        data = _write_field(chooser, data, word * width, width, byteorder)
    return data


def edit_header_field(chooser: Chooser, data: bytearray) -> bytearray:
    """Set a width, height, depth, count, offset or length field of the format's header to an extreme value."""
    fields = header_fields(bytes(data))
    if not fields:
        return write_interesting_value(chooser, data)
    offset, width, byteorder = chooser.choice(fields)
    return _write_field(chooser, data, offset, width, byteorder)


def splice(chooser: Chooser, data: bytearray) -> bytearray:
    """The head of this file and the tail of another seed (same or other format)."""
    seeds = seed_files()
    other = seeds[chooser.choice(sorted(seeds))]
    return data[:chooser.integer(0, len(data))] + bytearray(other[chooser.integer(0, len(other)):])


def fix_png_checksums(chooser: Chooser, data: bytearray) -> bytearray:
    """Recompute every PNG chunk CRC, so that the other mutations reach past Pillow's CRC check."""
    position = 8
    while position + 12 <= len(data):
        length = struct.unpack(">I", data[position:position + 4])[0]
        end = position + 8 + length
        if end + 4 > len(data):
            break
        data[end:end + 4] = struct.pack(">I", zlib.crc32(data[position + 4:end]) & 0xFFFFFFFF)
        position = end + 4
    return data


MUTATIONS: tuple[Callable[[Chooser, bytearray], bytearray], ...] = (
    flip_byte, truncate, delete_chunk, insert_random_chunk, duplicate_chunk,
    write_interesting_value, write_sample_values, edit_header_field, edit_header_field, splice,
)


def mutate(chooser: Chooser, seed_name: str | None = None, max_mutations: int = 4) -> tuple[str, bytes, list[str]]:
    """(seed name, mutated bytes, names of the mutations applied) for one fuzz input."""
    seeds = seed_files()
    name = seed_name or chooser.choice(sorted(seeds))
    data = bytearray(seeds[name])
    applied = []
    for _ in range(chooser.integer(1, max_mutations)):
        mutation = chooser.choice(MUTATIONS)
        data = mutation(chooser, data)
        applied.append(mutation.__name__)
    if data.startswith(b"\x89PNG") and chooser.integer(0, 1):
        data = fix_png_checksums(chooser, data)
        applied.append(fix_png_checksums.__name__)
    return name, bytes(data), applied


def _write_field(chooser: Chooser, data: bytearray, offset: int, width: int, byteorder: str) -> bytearray:
    if offset + width > len(data):
        return data
    value = chooser.choice(INTERESTING_VALUES) if chooser.integer(0, 3) else chooser.integer(0, 2 ** (8 * width) - 1)
    data[offset:offset + width] = (value & (2 ** (8 * width) - 1)).to_bytes(width, byteorder)
    return data


# ---------------------------------------------------------------- header fields


def header_fields(data: bytes) -> list[tuple[int, int, str]]:
    """(offset, width in bytes, byte order) of the size/depth/count/offset fields of a file's header."""
    if data.startswith(b"\x89PNG"):
        return [(16, 4, "big"), (20, 4, "big"), (24, 1, "big"), (25, 1, "big"), (28, 1, "big"), (8, 4, "big")]
    if data.startswith(b"\xff\xd8"):
        return _jpeg_fields(data)
    if data.startswith(b"GIF"):
        return _gif_fields(data)
    if data.startswith(b"BM"):
        return [(2, 4, "little"), (10, 4, "little"), (14, 4, "little"), (18, 4, "little"), (22, 4, "little"),
                (26, 2, "little"), (28, 2, "little"), (30, 4, "little"), (46, 4, "little")]
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_fields(data)
    if data.startswith(b"RIFF"):
        return [(4, 4, "little"), (16, 4, "little"), (24, 3, "little"), (27, 3, "little"), (26, 2, "little")]
    return []


def _jpeg_fields(data: bytes) -> list[tuple[int, int, str]]:
    fields = []
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        fields.append((position + 2, 2, "big"))  # segment length
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            # SOF: precision, height, width, components, then (id, sampling, table) per component.
            fields += [(position + 4, 1, "big"), (position + 5, 2, "big"), (position + 7, 2, "big"),
                       (position + 9, 1, "big"), (position + 11, 1, "big"), (position + 12, 1, "big")]
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            fields += [(position + 4, 1, "big"), (position + 6, 1, "big")]
            break
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return fields


def _gif_fields(data: bytes) -> list[tuple[int, int, str]]:
    fields = [(6, 2, "little"), (8, 2, "little"), (10, 1, "little")]
    descriptor = data.find(b"\x2c", 13)
    if descriptor > 0:
        fields += [(descriptor + offset, 2, "little") for offset in (1, 3, 5, 7)]
        fields += [(descriptor + 9, 1, "little"), (descriptor + 10, 1, "little")]
    return fields


def _tiff_fields(data: bytes) -> list[tuple[int, int, str]]:
    byteorder = "little" if data.startswith(b"II") else "big"
    ifd = int.from_bytes(data[4:8], byteorder)
    fields = [(4, 4, byteorder)]
    if ifd + 2 > len(data):
        return fields
    fields.append((ifd, 2, byteorder))
    for entry in range(min(int.from_bytes(data[ifd:ifd + 2], byteorder), 64)):
        start = ifd + 2 + 12 * entry
        fields += [(start + 2, 2, byteorder), (start + 4, 4, byteorder), (start + 8, 4, byteorder)]
    return fields


# ---------------------------------------------------------------- the property


def check_decode(data: bytes, color_mode: str, size: int | None) -> str:
    """Decode once; return 'ok' or the ImageDecodeError reason. Anything else is raised (or asserted)."""
    import numpy as np

    from imgclf_core.data.images import ImageDecodeError, decode_image

    try:
        with warnings.catch_warnings():
            # A numpy warning in our own code (a NaN cast to uint8, an overflow) is an undefined pixel.
            warnings.filterwarnings("error", category=RuntimeWarning, module=r"imgclf_core\.")
            array = decode_image(data, color_mode=color_mode, size=size)
    except ImageDecodeError as error:
        assert error.reason and str(error), "an ImageDecodeError without a reason"
        assert str(error).isprintable(), f"not one printable line: {str(error)!r}"
        return error.reason
    channels = 3 if color_mode == "rgb" else 1
    assert isinstance(array, np.ndarray) and array.dtype == np.uint8, f"got {type(array)} {getattr(array, 'dtype', '')}"
    assert array.ndim == 3 and array.shape[2] == channels and min(array.shape) > 0, f"bad shape {array.shape}"
    if size is not None:
        assert array.shape[:2] == (size, size), f"asked for {size} px, got {array.shape}"
    return "ok"


# ---------------------------------------------------------------- the standalone run


def _worker(connection) -> None:
    """Child process: decode what the parent sends; answer ('done', 'ok' or the reason) or ('bug', traceback)."""
    # libtiff and Pillow complain about every damaged file on stderr: thousands of lines of noise.
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    warnings.simplefilter("ignore", UserWarning)
    while True:
        message = connection.recv()
        if message is None:
            return
        data, color_mode, size = message
        try:
            connection.send(("done", check_decode(data, color_mode, size)))
        except BaseException:  # noqa: BLE001 - everything that is not ImageDecodeError is the finding
            connection.send(("bug", traceback.format_exc(limit=8)))


class DecodeWorker:
    """A child process that decodes; restarted after a crash or a hang."""

    def __init__(self):
        self.context = multiprocessing.get_context("spawn")
        self._start()

    def _start(self) -> None:
        self.connection, child_end = self.context.Pipe()
        self.process = self.context.Process(target=_worker, args=(child_end,), daemon=True)
        self.process.start()
        child_end.close()

    def decode(self, data: bytes, color_mode: str, size: int | None, time_limit: float) -> tuple[str, str]:
        """('done', reason-or-ok), ('bug', traceback), ('hang', ...) or ('crash', exit code)."""
        self.connection.send((data, color_mode, size))
        if not self.connection.poll(time_limit):
            self.process.kill()
            self.process.join()
            self._start()
            return "hang", f"no answer within {time_limit:.0f} s"
        try:
            return self.connection.recv()
        except EOFError:
            self.process.join()
            code = self.process.exitcode
            self._start()
            return "crash", f"decoding process died (exit code {code})"

    def close(self) -> None:
        self.connection.send(None)
        self.process.join(timeout=10)


def run_fuzz(seconds: float, time_limit: float, failures_dir: Path, seed: int | None, first_limit: float) -> int:
    """Fuzz for `seconds`; print a summary; return how many failures were found."""
    chooser = RandomChooser(seed)
    worker = DecodeWorker()
    # The first decode imports numpy, Pillow and the project in the child: allow it more time.
    worker.decode(seed_files()["chelsea.png"], "rgb", None, first_limit)
    outcomes: dict[str, int] = {}
    failures = 0
    tried = 0
    slowest = (0.0, "")
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        name, data, applied = mutate(chooser)
        color_mode = chooser.choice(("rgb", "grayscale"))
        size = chooser.choice((None, 32))
        decode_started = time.monotonic()
        kind, detail = worker.decode(data, color_mode, size, time_limit)
        seconds_taken = time.monotonic() - decode_started
        if seconds_taken > slowest[0]:
            slowest = (seconds_taken, f"{name} after {', '.join(applied)} ({detail})")
        tried += 1
        if kind == "done":
            outcomes[detail] = outcomes.get(detail, 0) + 1
            continue
        failures += 1
        failures_dir.mkdir(parents=True, exist_ok=True)
        saved = failures_dir / f"{kind}-{failures:03d}-{name}"
        saved.write_bytes(data)
        print(f"FAILURE ({kind}) from {name} after {', '.join(applied)}, color_mode={color_mode}, size={size};"
              f" bytes in {saved}\n{detail}", flush=True)
    worker.close()
    elapsed = time.monotonic() - started
    summary = ", ".join(f"{reason}: {count}" for reason, count in sorted(outcomes.items(), key=lambda item: -item[1]))
    print(f"tried {tried} inputs in {elapsed:.0f} s ({tried / max(elapsed, 1e-9):.0f}/s); {failures} failure(s)")
    print(f"outcomes: {summary}")
    print(f"slowest decode: {slowest[0]:.2f} s, {slowest[1]}")
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="how long to fuzz (default 60)")
    parser.add_argument("--time-limit", type=float, default=10, help="seconds one decode may take (default 10)")
    parser.add_argument("--failures", type=Path, default=Path(tempfile.gettempdir()) / "imgclf-fuzz-failures",
                        help="where failing inputs are saved (default: a folder in the system temp folder)")
    parser.add_argument("--seed", type=int, default=None, help="random seed, to repeat a run exactly")
    args = parser.parse_args(argv)
    failures = run_fuzz(args.seconds, args.time_limit, args.failures, args.seed, first_limit=120)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
