"""split_by_content_hash on real scanned files: deterministic, stratified, duplicates kept together."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from helpers.files import png_bytes, write

from imgclf_core.data.dataset import DatasetIndex, scan_dataset
from imgclf_core.data.split import split_by_content_hash

CLASS_SIZES = {"ants": 40, "bees": 20, "cicadas": 5, "dragonflies": 2, "earwigs": 1}


@pytest.fixture(scope="module")
def unique_index(tmp_path_factory) -> DatasetIndex:
    """Five classes of 40, 20, 5, 2 and 1 distinct images (no duplicates)."""
    root = tmp_path_factory.mktemp("unique")
    seed = 0
    for label, count in CLASS_SIZES.items():
        for number in range(count):
            seed += 1
            write(root, f"{label}/{number:03d}.png", png_bytes(seed))
    return scan_dataset(root, use_cache=False)


@pytest.fixture(scope="module")
def duplicate_index(tmp_path_factory) -> DatasetIndex:
    """Two classes of 12 distinct images plus copies: within a class and across classes."""
    root = tmp_path_factory.mktemp("duplicates")
    for number in range(12):
        write(root, f"ants/{number:02d}.png", png_bytes(1000 + number))
        write(root, f"bees/{number:02d}.png", png_bytes(2000 + number))
    write(root, "ants/00 copy.png", png_bytes(1000))
    write(root, "ants/deep/00 again.png", png_bytes(1000))
    write(root, "bees/looks_like_ant_05.png", png_bytes(1005))
    write(root, "bees/looks_like_ant_07.png", png_bytes(1007))
    write(root, "ants/looks_like_bee_03.png", png_bytes(2003))
    return scan_dataset(root, use_cache=False)


def validation_counts(validation) -> Counter:
    return Counter(record.label for record in validation)


def test_fixtures_are_what_the_tests_assume(unique_index, duplicate_index):
    assert unique_index.class_counts == CLASS_SIZES
    assert unique_index.duplicate_groups == []
    assert duplicate_index.duplicate_groups == [
        ["ants/00 copy.png", "ants/00.png", "ants/deep/00 again.png"],
        ["ants/05.png", "bees/looks_like_ant_05.png"],
        ["ants/07.png", "bees/looks_like_ant_07.png"],
        ["ants/looks_like_bee_03.png", "bees/03.png"],
    ]


def test_same_seed_same_split_whatever_the_record_order(unique_index):
    train, validation = split_by_content_hash(unique_index.records, 0.2, seed=7)
    shuffled = list(unique_index.records)
    random.Random(3).shuffle(shuffled)
    assert split_by_content_hash(shuffled, 0.2, seed=7) == (train, validation)
    assert split_by_content_hash(tuple(unique_index.records), 0.2, seed=7) == (train, validation)


def test_another_seed_gives_another_split(unique_index):
    _, validation_a = split_by_content_hash(unique_index.records, 0.2, seed=7)
    _, validation_b = split_by_content_hash(unique_index.records, 0.2, seed=8)
    assert {record.path for record in validation_a} != {record.path for record in validation_b}
    assert validation_counts(validation_a) == validation_counts(validation_b)  # same sizes per class


@pytest.mark.parametrize(
    "fraction, expected",
    [
        (0.2, {"ants": 8, "bees": 4, "cicadas": 1, "dragonflies": 1}),
        (0.1, {"ants": 4, "bees": 2, "cicadas": 1, "dragonflies": 1}),  # >= 1 for classes of >= 2
        (0.5, {"ants": 20, "bees": 10, "cicadas": 2, "dragonflies": 1}),
        (0.9, {"ants": 36, "bees": 18, "cicadas": 4, "dragonflies": 1}),  # >= 1 left for training
    ],
)
def test_fraction_per_class(unique_index, fraction, expected):
    train, validation = split_by_content_hash(unique_index.records, fraction, seed=1337)
    assert dict(validation_counts(validation)) == expected
    train_counts = Counter(record.label for record in train)
    assert all(train_counts[label] >= 1 for label in CLASS_SIZES)  # every class can be learned
    assert train_counts["earwigs"] == 1  # a one-image class stays in training


@pytest.mark.parametrize("seed", range(10))
def test_every_class_of_two_or_more_has_validation_and_training_images(unique_index, seed):
    train, validation = split_by_content_hash(unique_index.records, 0.05, seed=seed)
    for label, count in CLASS_SIZES.items():
        in_validation = validation_counts(validation)[label]
        assert in_validation >= 1 if count >= 2 else in_validation == 0, label
        assert count - in_validation >= 1, label


def test_zero_fraction_is_all_training(unique_index):
    train, validation = split_by_content_hash(unique_index.records, 0.0, seed=1)
    assert validation == []
    assert train == sorted(unique_index.records, key=lambda record: record.path)


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5])
def test_fraction_out_of_range_is_refused(unique_index, fraction):
    with pytest.raises(ValueError, match="validation_split"):
        split_by_content_hash(unique_index.records, fraction, seed=1)


@pytest.mark.parametrize("seed", range(20))
def test_partition_is_complete_disjoint_and_keeps_duplicates_together(duplicate_index, seed):
    train, validation = split_by_content_hash(duplicate_index.records, 0.3, seed=seed)
    train_paths = [record.path for record in train]
    validation_paths = [record.path for record in validation]
    assert train_paths == sorted(train_paths) and validation_paths == sorted(validation_paths)
    assert set(train_paths).isdisjoint(validation_paths)
    assert sorted(train_paths + validation_paths) == sorted(record.path for record in duplicate_index.records)
    assert {record.sha256 for record in train}.isdisjoint({record.sha256 for record in validation})
    sides = {path: "train" for path in train_paths} | {path: "validation" for path in validation_paths}
    for group in duplicate_index.duplicate_groups:
        assert len({sides[path] for path in group}) == 1, group


def test_duplicate_groups_do_land_on_both_sides_across_seeds(duplicate_index):
    """Proof the test above is not vacuous: each duplicate group goes to validation for some seed."""
    sha_of = {record.path: record.sha256 for record in duplicate_index.records}
    groups = [sha_of[group[0]] for group in duplicate_index.duplicate_groups]
    seen_in_validation = set()
    for seed in range(20):
        _, validation = split_by_content_hash(duplicate_index.records, 0.3, seed=seed)
        seen_in_validation |= {record.sha256 for record in validation} & set(groups)
    assert seen_in_validation == set(groups)


def test_a_duplicate_group_counts_once_for_the_class_of_its_first_path(duplicate_index):
    # ants: 12 distinct + 1 bee look-alike whose first path is ants/ -> 13 groups; bees: 12 - 1 = 11.
    _, validation = split_by_content_hash(duplicate_index.records, 0.5, seed=4)
    groups_in_validation = Counter()
    for sha in {record.sha256 for record in validation}:
        members = [record for record in duplicate_index.records if record.sha256 == sha]
        groups_in_validation[min(members, key=lambda record: record.path).label] += 1
    assert groups_in_validation == {"ants": round(13 * 0.5), "bees": round(11 * 0.5)}
