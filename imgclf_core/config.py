"""Frozen configuration dataclasses: widgets, the CLI and run folders all build and store these."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar


ConfigT = TypeVar("ConfigT")

# The decoder's colour modes; imgclf_core.data.images reads them from here.
COLOR_MODES = ("rgb", "grayscale")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


@dataclass(frozen=True)
class AugmentationConfig:
    """Random augmentation applied to training batches (never to validation)."""

    # Mild by default: from scratch on small images, rotation/zoom/contrast/brightness slowed
    # learning more than they regularised (Fashion-MNIST, small_cnn, 10 epochs: 91.35% test
    # accuracy with flip, rotation 10, zoom/translation/contrast/brightness 0.1; 92.46% with flip
    # and translation 0.05 alone, reaching 90% two epochs sooner). Turn them up for varied photos.
    horizontal_flip: bool = True
    rotation_degrees: float = 0.0
    zoom: float = 0.0
    translation: float = 0.05
    contrast: float = 0.0
    brightness: float = 0.0

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


@dataclass(frozen=True)
class ModelConfig:
    """Which registered model to build (see imgclf_core.models.registry.MODEL_REGISTRY) and its options."""

    name: str = "small_cnn"
    # Pretrained models only: "imagenet", "none" (random init) or a path to a Keras weights file.
    weights: str = "imagenet"
    dropout: float = 0.2
    # Fine-tuning unfreezes this fraction of the base's layers, counted from the top.
    fine_tune_fraction: float = 0.3

    def __post_init__(self) -> None:
        _check_range("dropout", self.dropout, 0.0, 0.9)
        _check_range("fine_tune_fraction", self.fine_tune_fraction, 0.0, 1.0)


@dataclass(frozen=True)
class TrainingConfig:
    """How to fit: epochs, learning rates, stopping and class weights."""

    # small_cnn on full Fashion-MNIST with the from-scratch recipe (training/recommend.py): 93.6% test
    # accuracy after 15 epochs (bench/bench_training.py).
    epochs: int = 15
    learning_rate: float = 1e-3
    # Transfer learning: after `epochs` on a frozen base, this many epochs fine-tuning its top.
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float = 1e-4
    # "cosine": decay to ~0 over each stage; "constant": only reduce-on-plateau changes it.
    schedule: str = "cosine"
    # The learning rate rises linearly from ~0 over each stage's first this many epochs (large batches need it).
    warmup_epochs: float = 0.0
    # Validation, model.keras and exports use an exponential moving average of the weights with this
    # decay (0 = off); see imgclf_core.training.weight_average. Not in the head stage of a pretrained model.
    weight_average_decay: float = 0.0
    # Training targets are (1 - s) one-hot + s / classes; the reported losses stay plain cross-entropy.
    label_smoothing: float = 0.0
    early_stopping_patience: int = 5  # epochs without val_loss improvement; 0 = never stop early
    reduce_lr_patience: int = 2
    reduce_lr_factor: float = 0.5
    # "auto": weight classes by inverse frequency when largest/smallest > 1.5; "none"; "balanced".
    class_weighting: str = "auto"
    progress_every_batches: int = 10
    # model.keras (a better epoch) and checkpoint/ are written at most this often; in between the last
    # epoch's weights wait in memory and are written on stop, finish or an error, so only a hard kill can
    # lose them (at most this long of training). 0: after every epoch. Epoch-end writes of a large model
    # cost as much as a short epoch (efficientnet_lite0 on 120 photos: 0.7 s writes, 1.8 s epoch).
    save_every_seconds: float = 30.0

    def __post_init__(self) -> None:
        _check_range("epochs", self.epochs, 0, 10_000)
        _check_range("fine_tune_epochs", self.fine_tune_epochs, 0, 10_000)
        if self.epochs + self.fine_tune_epochs < 1:
            raise ValueError("epochs + fine_tune_epochs must be at least 1")
        _check_range("learning_rate", self.learning_rate, 1e-7, 10.0)
        _check_range("fine_tune_learning_rate", self.fine_tune_learning_rate, 1e-8, 10.0)
        _check_range("reduce_lr_factor", self.reduce_lr_factor, 0.01, 1.0)
        _check_range("progress_every_batches", self.progress_every_batches, 1, 100_000)
        _check_range("warmup_epochs", self.warmup_epochs, 0.0, 1000.0)
        _check_range("weight_average_decay", self.weight_average_decay, 0.0, 0.99999)
        _check_range("label_smoothing", self.label_smoothing, 0.0, 0.5)
        _check_range("save_every_seconds", self.save_every_seconds, 0.0, 86_400.0)
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.class_weighting not in ("auto", "none", "balanced"):
            raise ValueError(f"class_weighting must be 'auto', 'none' or 'balanced', got {self.class_weighting!r}")

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.fine_tune_epochs


@dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs; stored as config.json so a run can be repeated from it alone."""

    data_dir: str
    data: DataConfig = DataConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()


def run_config_from_dict(values: dict[str, Any]) -> RunConfig:
    """A RunConfig from config.json's "run" section, refusing unknown keys at every level."""
    parts = {"data": DataConfig, "augmentation": AugmentationConfig, "model": ModelConfig, "training": TrainingConfig}
    nested = {key: config_from_dict(parts[key], values[key]) for key in parts if key in values}
    flat = {key: value for key, value in values.items() if key not in parts}
    return config_from_dict(RunConfig, {**flat, **nested})


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



NO_AUGMENTATION = AugmentationConfig(False, 0.0, 0.0, 0.0, 0.0, 0.0)
