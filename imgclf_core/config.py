"""Frozen configuration dataclasses: widgets, the CLI and run folders all build and store these."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from imgclf_core.images import COLOR_MODES

ConfigT = TypeVar("ConfigT")


@dataclass(frozen=True)
class AugmentationConfig:
    """Random augmentation applied to training batches (never to validation)."""

    horizontal_flip: bool = True
    rotation_degrees: float = 10.0
    zoom: float = 0.1
    translation: float = 0.1
    contrast: float = 0.1
    brightness: float = 0.1

    def __post_init__(self) -> None:
        _check_range("rotation_degrees", self.rotation_degrees, 0.0, 180.0)
        for name in ("zoom", "translation", "contrast", "brightness"):
            _check_range(name, getattr(self, name), 0.0, 0.9)

    @property
    def is_identity(self) -> bool:
        return not self.horizontal_flip and not any(
            (self.rotation_degrees, self.zoom, self.translation, self.contrast, self.brightness)
        )


@dataclass(frozen=True)
class DataConfig:
    """How a folder becomes batches: image size, colour mode, split and batching."""

    image_size: int = 64
    color_mode: str = "rgb"
    validation_split: float = 0.2
    seed: int = 1337
    batch_size: int = 32
    cache: str = "auto"  # "memory", "disk" or "auto" (disk above a size limit)

    def __post_init__(self) -> None:
        if self.color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {COLOR_MODES}, got {self.color_mode!r}")
        _check_range("image_size", self.image_size, 8, 1024)
        _check_range("validation_split", self.validation_split, 0.0, 0.9)
        _check_range("batch_size", self.batch_size, 1, 4096)
        if self.cache not in ("memory", "disk", "auto"):
            raise ValueError(f"cache must be 'memory', 'disk' or 'auto', got {self.cache!r}")

    @property
    def channels(self) -> int:
        return 3 if self.color_mode == "rgb" else 1


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (nested configs included)."""
    return dataclasses.asdict(config)


def config_from_dict(config_class: type[ConfigT], values: dict[str, Any]) -> ConfigT:
    """Build a config from a dict, refusing unknown keys so a typo never passes silently."""
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} keys: {', '.join(unknown)}")
    return config_class(**values)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


NO_AUGMENTATION = AugmentationConfig(False, 0.0, 0.0, 0.0, 0.0, 0.0)
