"""Reduced-scale JPEG decoding, inspect_image, and the synthetic phone-photo folders they are tested on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from imgclf_core.data import images
from imgclf_core.data.images import ImageDecodeError, decode_image, decode_image_with_info, inspect_image
from imgclf_core.data.synthetic_photos import PHOTO_CLASSES, write_photo_folder

PHONE = (4032, 3024)
# Worst case over 8 phone photos per size (4 classes x 2, 4032x3024, quality 90, seed 0), measured
# with Pillow 13 / libjpeg-turbo: mean |reduced - full| and max; bounds keep a small margin.
#   224 px: mean 0.53, max 9    96 px: mean 0.24, max 3    64 px: mean 0.20, max 1
#   (120, 160): mean 0.33, max 4
BOUNDS = {224: (0.8, 16), 96: (0.4, 6), 64: (0.3, 3), (120, 160): (0.5, 8)}


@pytest.fixture(scope="module")
def phone_photos(tmp_path_factory) -> list[Path]:
    """Eight 12-megapixel phone photos, every second one a portrait shot stored with EXIF Orientation 6."""
    folder = tmp_path_factory.mktemp("phone")
    write_photo_folder(folder, classes=4, per_class=2, size=PHONE, seed=0, exif_rotated_fraction=0.5)
    return sorted(folder.glob("*/*.jpg"))


def orientation(path: Path) -> int:
    with Image.open(path) as image:
        return image.getexif().get(0x0112, 1)


@pytest.fixture
def draft_sizes(monkeypatch) -> list[tuple[int, int]]:
    """Spy on Pillow's JPEG draft: the size each drafted image will be decoded at."""
    sizes: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return sizes


# ---------------------------------------------------------------- reduced decode vs full decode


@pytest.mark.parametrize("size", list(BOUNDS))
def test_reduced_decode_is_within_bound_of_full_decode(phone_photos, size):
    mean_bound, max_bound = BOUNDS[size]
    for path in phone_photos:
        full = decode_image(path, size=size, reduced_jpeg_decode=False).astype(np.int16)
        reduced = decode_image(path, size=size).astype(np.int16)
        assert reduced.shape == full.shape
        difference = np.abs(reduced - full)
        assert difference.mean() <= mean_bound, path
        assert difference.max() <= max_bound, path
        # Not the same pixels: the reduced path really ran (the full decode would match exactly).
        assert difference.mean() > 0, path


def test_reduced_decode_drafts_to_the_smallest_scale_not_below_the_size(phone_photos, draft_sizes):
    landscape = next(path for path in phone_photos if orientation(path) == 1)
    decode_image(landscape, size=224)
    decode_image(landscape, size=(400, 700))  # 4032 // 700 = 5 and 3024 // 400 = 7: 1/4 scale
    decode_image(landscape, size=224, reduced_jpeg_decode=False)
    decode_image(landscape)  # no size: nothing to reduce to
    assert draft_sizes == [(504, 378), (1008, 756)]


def test_small_jpeg_and_png_are_decoded_as_before(tmp_path):
    """Under twice the size a JPEG is not drafted; other formats never are: the pixels are identical."""
    write_photo_folder(tmp_path / "small", classes=1, per_class=1, size=(400, 300))
    jpeg = next((tmp_path / "small").glob("*/*.jpg"))
    png = tmp_path / "photo.png"
    with Image.open(jpeg) as image:
        image.resize((1600, 1200)).save(png)
    for path, size in [(jpeg, 224), (jpeg, (160, 201)), (png, 64)]:
        full = decode_image(path, size=size, reduced_jpeg_decode=False)
        np.testing.assert_array_equal(decode_image(path, size=size), full)


def test_phone_mpo_is_drafted_like_a_jpeg(phone_photos, tmp_path, draft_sizes):
    """A stereo MPO (two JPEG frames) is drafted too, and its first frame comes out as the same JPEG would."""
    with Image.open(phone_photos[0]) as image:
        first = image.resize((1600, 1200))
    mpo, jpeg = tmp_path / "stereo.mpo", tmp_path / "left.jpg"
    first.save(mpo, "MPO", save_all=True, append_images=[first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    first.save(jpeg, "JPEG")
    reduced = decode_image_with_info(mpo, size=96)
    assert draft_sizes == [(200, 150)]
    np.testing.assert_array_equal(reduced.array, decode_image(jpeg, size=96))
    assert reduced.info == images.ImageInfo("MPO", 1600, 1200, "RGB", 2) == inspect_image(mpo)


# ---------------------------------------------------------------- EXIF orientation


@pytest.mark.parametrize("max_side", [128, 512])
def test_max_side_keeps_the_upright_aspect_and_shrinks_while_decoding(phone_photos, draft_sizes, max_side):
    """Thumbnails and display: the longer side at most max_side, portrait shots upright, drafted JPEGs."""
    for path in phone_photos:
        shrunk = decode_image(path, max_side=max_side)
        portrait = orientation(path) == 6
        expected = (max_side, round(max_side * 3024 / 4032)) if portrait else (round(max_side * 3024 / 4032), max_side)
        assert shrunk.shape[:2] == expected, path
        full = decode_image(path, size=expected, reduced_jpeg_decode=False).astype(np.int16)
        assert np.abs(shrunk.astype(np.int16) - full).mean() <= BOUNDS[224][0], path
    assert draft_sizes and max(max(size) for size in draft_sizes) < 4032  # never decoded at full size


def test_max_side_leaves_a_small_image_as_it_is_and_refuses_size_with_it(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(np.arange(28 * 20, dtype=np.uint8).reshape(20, 28)).save(path)
    assert np.array_equal(decode_image(path, max_side=128, color_mode="grayscale"),
                          decode_image(path, color_mode="grayscale"))
    with pytest.raises(ValueError, match="size or max_side"):
        decode_image(path, size=64, max_side=128)


@pytest.mark.parametrize("size", [224, (120, 160)])
def test_portrait_shot_is_upright_in_reduced_and_full_decode(phone_photos, size):
    portraits = [path for path in phone_photos if orientation(path) == 6]
    assert portraits
    mean_bound, max_bound = BOUNDS[size]
    for path in portraits:
        full = decode_image_with_info(path, size=size, reduced_jpeg_decode=False)
        reduced = decode_image_with_info(path, size=size)
        assert full.info == reduced.info
        assert (reduced.info.width, reduced.info.height) == (3024, 4032)  # upright, not as stored
        difference = np.abs(reduced.array.astype(np.int16) - full.array)
        assert reduced.array.shape == full.array.shape
        assert difference.mean() <= mean_bound and difference.max() <= max_bound, path


def test_portrait_shot_drafts_with_its_upright_sides(phone_photos, draft_sizes):
    """Stored 4032x3024 sideways, shown 3024 wide and 4032 high: a 2000 wide target forbids any reduction.

    Drafting with the stored sides would pick 1/2 scale (upright 1512 wide, less than 2000) and upscale.
    """
    portrait = next(path for path in phone_photos if orientation(path) == 6)
    reduced = decode_image(portrait, size=(1000, 2000))
    assert draft_sizes == [(4032, 3024)]
    np.testing.assert_array_equal(reduced, decode_image(portrait, size=(1000, 2000), reduced_jpeg_decode=False))
    decode_image(portrait, size=(1900, 1000))  # upright 3024 // 1000 = 3, 4032 // 1900 = 2: 1/2 scale
    assert draft_sizes[-1] == (2016, 1512)


# ---------------------------------------------------------------- inspect_image


def test_inspect_image_reports_what_the_decode_reports(phone_photos, draft_sizes):
    for path in phone_photos:
        assert inspect_image(path) == decode_image_with_info(path, reduced_jpeg_decode=False).info
    # Every inspected photo was decoded at 1/8 scale, whatever its orientation.
    assert draft_sizes == [(504, 378)] * len(phone_photos)
    assert inspect_image(phone_photos[0], reduced_jpeg_decode=False) == inspect_image(phone_photos[0])


def test_inspect_image_of_other_formats_matches_decode(tmp_path):
    png = tmp_path / "frames.gif"
    frames = [Image.new("RGB", (30, 20), color) for color in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(png, save_all=True, append_images=frames[1:], duration=100)
    assert inspect_image(png) == decode_image_with_info(png).info
    assert inspect_image(png).frames == 2


def jpeg_marker_offset(data: bytes, marker: int) -> int:
    """Offset of the first segment with this marker (0xDA = SOS, 0xC4 = DHT), walking the headers."""
    position = 2
    while data[position + 1] != marker:
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return position


def unknown_component_in_scan(data: bytes) -> bytes:
    sos = jpeg_marker_offset(data, 0xDA)
    return data[:sos + 5] + b"\x09" + data[sos + 6:]


def bogus_huffman_table(data: bytes) -> bytes:
    dht = jpeg_marker_offset(data, 0xC4)
    return data[:dht + 5] + b"\xff" * 16 + data[dht + 21:]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda data: data[: len(data) // 2], images.TRUNCATED),
        (lambda data: data[:-5000], images.TRUNCATED),
        (unknown_component_in_scan, images.CORRUPT),
        (bogus_huffman_table, images.CORRUPT),
    ],
    ids=["cut in half", "end cut off", "unknown component in scan", "bogus Huffman table"],
)
def test_inspect_image_refuses_damaged_jpeg_with_the_decode_reason(phone_photos, damage, reason):
    data = damage(phone_photos[0].read_bytes())
    errors = []
    for check in (lambda: decode_image(data), lambda: decode_image(data, size=224), lambda: inspect_image(data)):
        with pytest.raises(ImageDecodeError) as caught:
            check()
        errors.append(caught.value.reason)
    assert errors == [reason] * 3


def test_inspect_image_enforces_the_limits(phone_photos):
    with pytest.raises(ImageDecodeError) as caught:
        inspect_image(phone_photos[0], max_pixels=4032 * 3024 - 1)
    assert caught.value.reason == images.TOO_MANY_PIXELS
    with pytest.raises(ImageDecodeError) as caught:
        inspect_image(phone_photos[0], max_bytes=1000)
    assert caught.value.reason == images.FILE_TOO_LARGE


# ---------------------------------------------------------------- write_photo_folder


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def test_photo_folder_layout_counts_and_exif_rotation(tmp_path):
    counts = write_photo_folder(tmp_path, classes=3, per_class=8, size=(320, 240), exif_rotated_fraction=0.25)
    assert counts == {"cat": 8, "coffee": 8, "astronaut": 8}
    assert [path.relative_to(tmp_path).as_posix() for path in files_under(tmp_path)] == [
        f"{name}/IMG_{number:04d}.jpg" for name in sorted(counts) for number in range(1, 9)
    ]
    for path in files_under(tmp_path):
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (320, 240)
        decoded = decode_image_with_info(path)
        turned = orientation(path) == 6
        assert decoded.array.shape == ((320, 240, 3) if turned else (240, 320, 3))
        assert (decoded.info.width, decoded.info.height) == ((240, 320) if turned else (320, 240))
    rotated = [path.name for path in files_under(tmp_path / "cat") if orientation(path) == 6]
    assert rotated == ["IMG_0004.jpg", "IMG_0008.jpg"]  # a quarter, spread out


def test_portrait_shot_decodes_to_the_photo_it_was_framed_as(tmp_path):
    """A portrait shot stored sideways + Orientation 6 decodes upright: like the same photo stored upright.

    Measured: mean difference 1.7-2.7 (JPEG re-quantisation); upside-down or mirrored: 35-97.
    """
    write_photo_folder(tmp_path / "sideways", classes=2, per_class=2, size=(400, 300), exif_rotated_fraction=1.0)
    write_photo_folder(tmp_path / "upright", classes=2, per_class=2, size=(300, 400), exif_rotated_fraction=0.0)
    for path in files_under(tmp_path / "sideways"):
        twin = tmp_path / "upright" / path.relative_to(tmp_path / "sideways")
        assert orientation(path) == 6 and orientation(twin) == 1
        with Image.open(path) as image:
            assert image.size == (400, 300)
        sideways, upright = decode_image(path).astype(np.int16), decode_image(twin).astype(np.int16)
        assert sideways.shape == upright.shape == (400, 300, 3)
        assert np.abs(sideways - upright).mean() < 4
        assert np.abs(sideways[::-1, ::-1] - upright).mean() > 20  # the check can tell a wrong turn


def test_split_layout_counts_and_no_duplicates(tmp_path):
    splits = {"train": 3, "validation": 2, "test": 1}
    counts = write_photo_folder(tmp_path, classes=2, size=(160, 120), splits=splits, per_class=99)
    assert counts == {split: {"cat": count, "coffee": count} for split, count in splits.items()}
    paths = files_under(tmp_path)
    assert len(paths) == 12
    assert {path.relative_to(tmp_path).parts[:2] for path in paths} == {
        (split, name) for split in splits for name in ("cat", "coffee")
    }
    # Numbers run on across splits, and each photo is its own crop: no two files alike.
    assert sorted(path.name for path in paths if path.parent.name == "cat") == [f"IMG_{n:04d}.jpg" for n in range(1, 7)]
    assert len({hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}) == 12
    thumbnails = [decode_image(path, size=16).astype(np.int16) for path in paths if path.parent.name == "cat"]
    closest = min(np.abs(a - b).mean() for i, a in enumerate(thumbnails) for b in thumbnails[i + 1:])
    assert closest > 3  # different framings, not the same picture with other noise


def test_same_seed_same_bytes_other_seed_other_photos(tmp_path):
    options = {"classes": 2, "per_class": 3, "size": (200, 150)}
    for name, seed in [("a", 5), ("b", 5), ("c", 6)]:
        write_photo_folder(tmp_path / name, seed=seed, workers=1 if name == "a" else 2, **options)
    digests = {
        name: [hashlib.sha256(path.read_bytes()).hexdigest() for path in files_under(tmp_path / name)]
        for name in "abc"
    }
    assert digests["a"] == digests["b"]
    assert not set(digests["a"]) & set(digests["c"])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"classes": 0}, "classes"),
        ({"classes": len(PHOTO_CLASSES) + 1}, "classes"),
        ({"per_class": 0}, "per_class"),
        ({"size": (4032,)}, "size"),
        ({"size": (8, 8)}, "size"),
        ({"exif_rotated_fraction": 1.5}, "exif_rotated_fraction"),
        ({"quality": 0}, "quality"),
        ({"splits": {}}, "splits"),
        ({"splits": {"train": -1}}, "train"),
        ({"splits": {"../x": 3}}, "folder names"),
        ({"splits": {"train": 0}}, "at least one"),
    ],
)
def test_bad_arguments_are_value_errors(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        write_photo_folder(tmp_path, **options)
    assert not any(tmp_path.iterdir())
