"""The RunConfig of a new run: the user's choices on a scanned dataset, the rest recommended from the data.

The one place that turns choices into a RunConfig: `imgclf train`, the Train page and the tests all
build their configs here, so a model trained from scratch gets the same defaults everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from imgclf_core.config import AugmentationConfig, DataConfig, ModelConfig, RunConfig, TrainingConfig
from imgclf_core.data.dataset import DatasetIndex
from imgclf_core.data.split import check_trainable_classes, split_records
from imgclf_core.models.errors import ModelError
from imgclf_core.models.registry import MODEL_REGISTRY, suggested_input
from imgclf_core.training.recommend import Recommendation, recommend_settings

PRETRAINED_WEIGHTS = "imagenet"
NO_WEIGHTS = "none"  # what a model trained from scratch starts from


@dataclass(frozen=True)
class RunChoices:
    """What the user chose for a new run; None means "recommended from the data" (or the model's default)."""

    model: str | None = None
    weights: str | None = None  # pretrained models: imagenet, none or a weights file
    image_size: int | None = None
    color_mode: str | None = None
    epochs: int | None = None
    fine_tune_epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    validation_split: float | None = None
    seed: int = DataConfig().seed
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)


@dataclass(frozen=True)
class ModelDefaults:
    """What a new run of one model gets on a dataset unless the user says otherwise."""

    image_size: int
    color_mode: str
    batch_size: int
    validation_split: float
    training: TrainingConfig  # epochs, fine-tune epochs, learning rate and the rest of the recipe


def model_defaults(model_name: str, index: DatasetIndex, recommended: Recommendation) -> ModelDefaults:
    """The recommendation for its model; for any other model, its own input on this data and the plain defaults."""
    if model_name == recommended.model:
        return ModelDefaults(recommended.image_size, recommended.color_mode, recommended.batch_size,
                             recommended.validation_split, recommended.training)
    image_size, color_mode = suggested_input(model_name, index)
    return ModelDefaults(image_size, color_mode, DataConfig().batch_size, DataConfig().validation_split,
                         TrainingConfig())


def build_run_config(
    data_dir: str | os.PathLike, index: DatasetIndex, choices: RunChoices = RunChoices(),
    recommended: Recommendation | None = None,
) -> RunConfig:
    """The RunConfig for training on `index` (scanned from `data_dir`): `choices`, the rest from the data."""
    recommended = recommended or recommend_settings(index)
    model_name = choices.model or recommended.model
    spec = MODEL_REGISTRY.get(model_name)
    if spec is None:
        raise ModelError(f"unknown model {model_name!r}; choose one of: {', '.join(MODEL_REGISTRY)}")
    defaults = model_defaults(model_name, index, recommended)
    weights = (choices.weights or PRETRAINED_WEIGHTS) if spec.pretrained else NO_WEIGHTS
    return RunConfig(
        data_dir=str(Path(data_dir).resolve()),
        data=DataConfig(
            image_size=int(choices.image_size or defaults.image_size), color_mode=choices.color_mode or defaults.color_mode,
            validation_split=float(_chosen_or(choices.validation_split, defaults.validation_split)),
            seed=int(choices.seed),
            batch_size=int(_chosen_or(choices.batch_size, defaults.batch_size)),
        ),
        augmentation=choices.augmentation,
        model=ModelConfig(name=model_name, weights=weights),
        training=replace(
            defaults.training,
            epochs=int(_chosen_or(choices.epochs, defaults.training.epochs)),
            fine_tune_epochs=int(_chosen_or(choices.fine_tune_epochs, defaults.training.fine_tune_epochs)),
            learning_rate=float(_chosen_or(choices.learning_rate, defaults.training.learning_rate)),
        ),
    )


def _chosen_or(chosen: float | None, default: float) -> float:
    return default if chosen is None else chosen


def check_can_train(index: DatasetIndex, validation_split: float, seed: int) -> None:
    """DatasetError now, not after the trainer starts, when a class would have no training images."""
    splits = split_records(index.records, validation_split, seed)
    check_trainable_classes(splits, index.class_names)
