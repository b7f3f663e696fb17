"""What a person should know about a scanned dataset beyond the counts: sizes, modes, health warnings."""

from __future__ import annotations

from collections import Counter

from imgclf_core.data.dataset import DatasetIndex

IMBALANCE_WARNING_RATIO = 3.0
TINY_CLASS_IMAGES = 10


def size_distribution(index: DatasetIndex, top: int = 10) -> list[tuple[str, int]]:
    """The most common "WxH" image sizes with their counts (the rest summed as "other")."""
    counts = Counter(f"{record.width}x{record.height}" for record in index.records)
    common = counts.most_common(top)
    rest = sum(counts.values()) - sum(count for _, count in common)
    return common + ([("other", rest)] if rest else [])


def mode_distribution(index: DatasetIndex) -> list[tuple[str, int]]:
    """Pillow modes of the files as stored (L, RGB, RGBA, P, ...) with their counts, most common first."""
    return Counter(record.mode for record in index.records).most_common()


def dataset_health_warnings(index: DatasetIndex) -> list[str]:
    """Imbalance, tiny classes and leakage risk, each as one sentence that says what to do."""
    warnings = []
    counts = {name: count for name, count in index.class_counts.items() if count > 0}
    if len(counts) >= 2:
        largest = max(counts, key=counts.get)
        smallest = min(counts, key=counts.get)
        ratio = counts[largest] / counts[smallest]
        if ratio > IMBALANCE_WARNING_RATIO:
            warnings.append(
                f"imbalance: '{largest}' has {ratio:.1f}x the images of '{smallest}' "
                f"({counts[largest]} vs {counts[smallest]}); training weights classes by inverse frequency"
            )
    tiny = sorted(name for name, count in counts.items() if count < TINY_CLASS_IMAGES)
    if tiny:
        warnings.append(
            f"tiny classes: {', '.join(repr(name) for name in tiny)} have fewer than {TINY_CLASS_IMAGES} "
            "images; validation figures for them mean little"
        )
    # Copies across the dataset's own split folders are leakage, which the scan already reports.
    leaked = index.leakage_groups
    groups = [group for group in index.duplicate_groups if group not in leaked]
    if groups:
        copies = sum(len(group) - 1 for group in groups)
        kept_together = "" if index.layout.has_splits else "the split keeps copies on one side, but "
        warnings.append(
            f"leakage risk: {copies} file(s) are exact copies of others ({len(groups)} group(s)); {kept_together}"
            "remove them or they count several times"
        )
    return warnings
