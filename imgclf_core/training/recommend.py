"""Training settings chosen from the data: model, image size, colour mode and epochs, with a one-line reason.

Measured on the two kinds of data people bring (README, bench/bench_photos.py): on a folder of
160 phone photos, `small_cnn` from scratch stays at chance while the offline ImageNet
`efficientnet_lite0` reaches 97-100% validation accuracy; on small grayscale images in quantity
(Fashion-MNIST), `small_cnn` at the images' own size is both faster and more accurate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from imgclf_core.config import DataConfig, TrainingConfig
from imgclf_core.data.dataset import DatasetIndex
from imgclf_core.models.registry import MODEL_REGISTRY, OFFLINE_BACKBONE, suggested_input

FROM_SCRATCH_MODEL = "small_cnn"
# Below this many images in the smallest class, a network trained from scratch cannot generalise.
FEW_IMAGES_PER_CLASS = 100
# From this median shorter side on, images are photos rather than icons or digits.
PHOTO_SIDE = 64
# Head epochs run on cached features (a second or so each); fine-tuning runs the whole base.
PRETRAINED_TRAINING = TrainingConfig(epochs=20, fine_tune_epochs=5)
# From scratch (bench/bench_training.py, Fashion-MNIST): weight averaging and label smoothing, a
# short warm-up, then cosine decay. From LARGE_DATASET images on, batches of 128 at a 3x learning
# rate (1.2x the images per second of batches of 32 on 2 CPU cores, and a quarter of the steps), and
# 10% held out for validation instead of 20%: still thousands of images, and more to learn from.
FROM_SCRATCH_TRAINING = TrainingConfig(
    epochs=15, learning_rate=1e-3, warmup_epochs=0.2, weight_average_decay=0.999, label_smoothing=0.1,
)
LARGE_DATASET = 20_000
LARGE_BATCH_SIZE = 128
LARGE_BATCH_LEARNING_RATE = 3e-3
LARGE_VALIDATION_SPLIT = 0.1


@dataclass(frozen=True)
class Recommendation:
    """Training settings for a dataset and why."""

    model: str
    image_size: int
    color_mode: str
    batch_size: int
    training: TrainingConfig  # epochs, learning rate and the rest of the recipe for this model and data
    reason: str
    validation_split: float = DataConfig().validation_split

    @property
    def epochs(self) -> int:
        return self.training.epochs

    @property
    def fine_tune_epochs(self) -> int:
        return self.training.fine_tune_epochs


def recommend_settings(index: DatasetIndex) -> Recommendation:
    """Photos, colour images or few images per class -> pretrained efficientnet_lite0; else small_cnn."""
    records = index.records
    counts = [count for count in index.class_counts.values() if count > 0]
    fewest = min(counts) if counts else 0
    sides = sorted(min(record.width, record.height) for record in records)
    median_side = sides[len(sides) // 2] if sides else 0
    colour = bool(records) and not index.all_grayscale
    reasons = [
        text for condition, text in (
            (median_side >= PHOTO_SIDE, f"photos ({median_side} px median shorter side)"),
            (colour, "colour images"),
            (bool(records) and fewest < FEW_IMAGES_PER_CLASS, f"only {fewest} images in the smallest class"),
        ) if condition
    ]
    if reasons:
        spec = MODEL_REGISTRY[OFFLINE_BACKBONE]
        return Recommendation(
            OFFLINE_BACKBONE, spec.default_image_size, "rgb", DataConfig().batch_size, PRETRAINED_TRAINING,
            f"{', '.join(reasons).capitalize()}: ImageNet-pretrained {OFFLINE_BACKBONE} at "
            f"{spec.default_image_size} px (works offline) learns these from few examples; a usable model comes "
            f"from its features in seconds, then {PRETRAINED_TRAINING.fine_tune_epochs} epochs fine-tune it.",
        )
    image_size, color_mode = suggested_input(FROM_SCRATCH_MODEL, index)
    batch_size, training, validation_split = DataConfig().batch_size, FROM_SCRATCH_TRAINING, DataConfig().validation_split
    if len(records) >= LARGE_DATASET:
        batch_size, validation_split = LARGE_BATCH_SIZE, LARGE_VALIDATION_SPLIT
        training = replace(training, learning_rate=LARGE_BATCH_LEARNING_RATE)
    return Recommendation(
        FROM_SCRATCH_MODEL, image_size, color_mode, batch_size, training,
        f"Small {color_mode} images ({median_side} px), at least {fewest} per class: {FROM_SCRATCH_MODEL} "
        f"trained from scratch at their own size is fast and accurate on these.",
        validation_split,
    )
