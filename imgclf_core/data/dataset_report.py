"""What a person should know about a scanned dataset beyond the counts: image sizes and colour modes.

Every warning about a dataset (the scan's and the health checks) is in `imgclf_core.data.dataset`.
"""

from __future__ import annotations

from collections import Counter

from imgclf_core.data.dataset import DatasetIndex


def size_distribution(index: DatasetIndex, top: int = 10) -> list[tuple[str, int]]:
    """The most common "WxH" image sizes with their counts (the rest summed as "other")."""
    counts = Counter(f"{record.width}x{record.height}" for record in index.records)
    common = counts.most_common(top)
    rest = sum(counts.values()) - sum(count for _, count in common)
    return common + ([("other", rest)] if rest else [])


def mode_distribution(index: DatasetIndex) -> list[tuple[str, int]]:
    """Pillow modes of the files as stored (L, RGB, RGBA, P, ...) with their counts, most common first."""
    return Counter(record.mode for record in index.records).most_common()
