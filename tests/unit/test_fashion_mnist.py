"""Fashion-MNIST IDX reading and tree export, on tiny IDX files and on Debian's real files."""

from __future__ import annotations

import csv
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers.files import ROOT

from imgclf_core.data import fashion_mnist
from imgclf_core.cli import main
from imgclf_core.data.dataset import scan_dataset
from imgclf_core.data.images import decode_image

SAMPLE_DATA = ROOT / "sample_data"


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def tiny_source(tmp_path):
    """A 3-per-class train split and a 4-image test split; pixel (0, 0) encodes split and index."""
    source = tmp_path / "idx"
    source.mkdir()
    train_labels = np.repeat(np.arange(10), 3)
    train_images = np.zeros((30, 28, 28), np.uint8)
    train_images[:, 0, 0] = np.arange(30)
    test_images = np.zeros((4, 28, 28), np.uint8)
    test_images[:, 0, 0] = 200 + np.arange(4)
    write_idx(source / "train-images-idx3-ubyte", train_images, compress=True)
    write_idx(source / "train-labels-idx1-ubyte", train_labels, compress=True)
    write_idx(source / "t10k-images-idx3-ubyte", test_images, compress=False)
    write_idx(source / "t10k-labels-idx1-ubyte", np.array([9, 0, 1, 2]), compress=False)
    return source


def test_sample_is_balanced_and_inbox_is_held_out(tiny_source, tmp_path):
    out = tmp_path / "sample"
    assert main(["fashion-mnist", str(out), "--source", str(tiny_source), "--sample", "2", "--inbox", "3"]) == 0
    index = scan_dataset(out / "fashion_mnist")
    assert index.class_counts == {name: 2 for name in sorted(fashion_mnist.CLASS_NAMES)}
    bag = sorted(record.path for record in index.records if record.label == "bag")
    assert bag == ["bag/train_00024.png", "bag/train_00025.png"]
    assert decode_image(out / "fashion_mnist" / bag[1], color_mode="grayscale")[0, 0, 0] == 25
    inbox = sorted(path.name for path in (out / "inbox").iterdir())
    assert inbox == ["test_00000.png", "test_00001.png", "test_00002.png"]
    assert decode_image(out / "inbox" / "test_00002.png", color_mode="grayscale")[0, 0, 0] == 202
    with open(out / "inbox_answers.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["file", "label"], ["test_00000.png", "ankle_boot"], ["test_00001.png", "tshirt_top"],
                    ["test_00002.png", "trouser"]]


def test_full_tree_has_every_image(tiny_source, tmp_path):
    counts = fashion_mnist.write_full_tree(tiny_source, tmp_path / "full")
    assert counts == {"train": 30, "test": 4}
    assert scan_dataset(tmp_path / "full" / "train").num_images == 30
    assert sorted(path.name for path in (tmp_path / "full" / "test" / "ankle_boot").iterdir()) == ["00000.png"]


def test_missing_source_is_a_clear_error(tmp_path, capsys):
    assert main(["fashion-mnist", str(tmp_path / "out"), "--source", str(tmp_path), "--sample", "1"]) == 2
    assert "train-images-idx3-ubyte(.gz) not found" in capsys.readouterr().err


def test_idx_with_wrong_length_is_refused(tmp_path):
    path = tmp_path / "bad-idx"
    path.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="holds 3 values"):
        fashion_mnist.read_idx(path)


@pytest.mark.skipif(
    not (fashion_mnist.DEFAULT_SOURCE_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)",
)
def test_shipped_sample_matches_the_real_dataset():
    images, labels = fashion_mnist.load_split(fashion_mnist.DEFAULT_SOURCE_DIR, "train")
    assert images.shape == (60000, 28, 28) and np.bincount(labels).tolist() == [6000] * 10
    index = scan_dataset(SAMPLE_DATA / "fashion_mnist")
    for record in index.records[::97]:
        position = int(Path(record.path).stem.split("_")[1])
        assert fashion_mnist.CLASS_NAMES[labels[position]] == record.label
        pixels = decode_image(index.absolute_path(record.path), color_mode="grayscale")[:, :, 0]
        np.testing.assert_array_equal(pixels, images[position])
    test_images, _ = fashion_mnist.load_split(fashion_mnist.DEFAULT_SOURCE_DIR, "test")
    inbox = decode_image(SAMPLE_DATA / "inbox" / "test_00059.png", color_mode="grayscale")[:, :, 0]
    np.testing.assert_array_equal(inbox, test_images[59])
