"""Classify images with a trained run (or the built-in ImageNet model) and explain them with Grad-CAM.

Every call goes through the model's compiled forward pass (`imgclf_core.models.forward`), traced
once per model: a warm single-image prediction is a graph call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import keras
from PIL import Image

from imgclf_core.config import DataConfig
from imgclf_core.data.dataset import DatasetIndex
from imgclf_core.fileio import atomic_write_with
from imgclf_core.inspection.gradcam import GradCam
from imgclf_core.data.images import ImageDecodeError, decode_image, read_image_bytes
from imgclf_core.models.errors import ModelError
from imgclf_core.models.forward import compiled_features_and_forward, compiled_forward
from imgclf_core.training.familiarity import Familiarity
from imgclf_core.inspection.overlay import display_image, overlay_heatmap
from imgclf_core.data.pipeline import decode_records

ProgressCallback = Callable[[int, int], None]
DEFAULT_BATCH_SIZE = 64
IMAGENET_IMAGE_SIZE = 224


class Predictor:
    """A model with its class names and input format: predicts arrays or files, explains with Grad-CAM."""

    def __init__(self, model: keras.Model, class_names: Sequence[str], image_size: int, color_mode: str,
                 familiarity: Familiarity | None = None, flip_average: bool = False):
        self.model = model
        # The run's unfamiliar-image model (training.familiarity), when it has one.
        self.familiarity = familiarity
        self._features_and_predict = None
        self.class_names = list(class_names)
        self.image_size = image_size
        self.color_mode = color_mode
        self.input_shape = (image_size, image_size, 3 if color_mode == "rgb" else 1)
        _check_model_matches(model, self.class_names, self.input_shape)
        # Test-time flip: probabilities are the mean over each image and its mirror image (Grad-CAM is not).
        self.flip_average = flip_average
        self._predict = compiled_forward(model, flip_average)
        self._other_forward: dict[bool, object] = {}  # the forward pass with the other flip setting, when asked
        self._gradcam: GradCam | None = None

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, flip_average: bool = False) -> "Predictor":
        """The best model of a run folder (calibrated), with its unfamiliar-image model if it has one."""
        from imgclf_core.training.run_folder import RunFolder

        folder = RunFolder(run_dir)
        model, class_names, run_config = folder.load_trained_model()
        return cls(model, class_names, run_config.data.image_size, run_config.data.color_mode,
                   familiarity=folder.read_familiarity(), flip_average=flip_average)

    @classmethod
    def from_model_file(
        cls, path: str | os.PathLike, class_names: Sequence[str] | None = None, *, max_bytes: int
    ) -> "Predictor":
        """A .keras file from elsewhere (an upload): safe mode, no custom or Lambda layers, at most `max_bytes`.

        Image size and colour mode come from the model's input; without class names, classes are numbered.
        """
        from imgclf_core.models.model_io import load_model_checked

        names = list(class_names) if class_names else None
        model = load_model_checked(path, expected_num_classes=len(names) if names else None, max_bytes=max_bytes)
        height, width, channels = tuple(model.inputs[0].shape[1:])
        if height is None or height != width or channels not in (1, 3):
            raise ModelError(f"{Path(path).name}: the model must take square grey or RGB images, "
                             f"it takes {(height, width, channels)}")
        names = names or [f"class {number}" for number in range(model.outputs[0].shape[-1])]
        return cls(model, names, height, "rgb" if channels == 3 else "grayscale")

    @classmethod
    def imagenet(cls) -> "Predictor":
        """The built-in offline ImageNet classifier: EfficientNet-Lite0, 1000 classes, 224 px RGB."""
        from imgclf_core.models.efficientnet_lite import imagenet_class_names, imagenet_efficientnet_lite0

        model = imagenet_efficientnet_lite0(IMAGENET_IMAGE_SIZE, channels=3)
        return cls(model, imagenet_class_names(), IMAGENET_IMAGE_SIZE, "rgb")

    def load_image(self, source) -> np.ndarray:
        """Decode a path, bytes or file object to this model's input: uint8 (S, S, C)."""
        return decode_image(source, color_mode=self.color_mode, size=(self.image_size, self.image_size))

    def load_images(self, paths: Sequence[str | os.PathLike]) -> tuple[np.ndarray | None, list[int], dict[int, str]]:
        """Decode what can be read: (uint8 batch of the readable files or None, their positions, {position: reason})."""
        images, readable, errors = [], [], {}
        for position, path in enumerate(paths):
            try:
                images.append(self.load_image(path))
                readable.append(position)
            except (ImageDecodeError, OSError) as error:
                errors[position] = str(error)
        return (np.stack(images) if images else None), readable, errors

    def predict_arrays(self, images: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE,
                       flip_average: bool | None = None) -> np.ndarray:
        """Probabilities (N, K) for a uint8 batch (N, S, S, C); flip_average (default: the predictor's own)
        averages each image with its mirror image."""
        batch = self._checked_batch(images)
        predict = self._predict
        if flip_average is not None and flip_average != self.flip_average:
            if flip_average not in self._other_forward:
                self._other_forward[flip_average] = compiled_forward(self.model, flip_average)
            predict = self._other_forward[flip_average]
        chunks = [predict(batch[start:start + batch_size]).numpy() for start in range(0, len(batch), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.class_names)), np.float32)

    def features_and_probabilities(self, images: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE
                                   ) -> tuple[np.ndarray, np.ndarray]:
        """The features the classifier reads (N, D) and the probabilities (N, K) of a uint8 batch, one forward
        pass per chunk (the test-time flip, when on, adds its own pass for the probabilities)."""
        batch = self._checked_batch(images)
        if self._features_and_predict is None:
            self._features_and_predict = compiled_features_and_forward(self.model)
        outputs = [self._features_and_predict(batch[start:start + batch_size]) for start in range(0, len(batch), batch_size)]
        if not outputs:
            return np.zeros((0, 0), np.float32), np.zeros((0, len(self.class_names)), np.float32)
        features = np.concatenate([chunk_features.numpy() for chunk_features, _ in outputs])
        if self.flip_average:
            return features, self.predict_arrays(batch, batch_size)
        return features, np.concatenate([chunk_probabilities.numpy() for _, chunk_probabilities in outputs])

    def unfamiliar(self, images: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE) -> list[dict] | None:
        """Per image of a uint8 batch: {"score", "threshold", "flagged"} (flagged: unlike the training data,
        see training.familiarity); None when the model has no unfamiliar-image model."""
        if self.familiarity is None:
            return None
        return self.unfamiliar_of_features(self.features_and_probabilities(images, batch_size)[0])

    def unfamiliar_of_features(self, features: np.ndarray) -> list[dict] | None:
        """unfamiliar() for features features_and_probabilities gave (no second forward pass)."""
        if self.familiarity is None:
            return None
        scores = self.familiarity.scores(features) if len(features) else np.zeros(0)
        threshold = round(self.familiarity.threshold, 6)
        return [{"score": round(float(score), 6), "threshold": threshold, "flagged": bool(score > threshold)}
                for score in scores]

    def top_k(self, probabilities: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """The k most probable (label, probability) pairs of one image, most probable first."""
        return top_k_labels(probabilities, self.class_names, k)

    def explain(self, image: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (K,), Grad-CAM heatmap (h, w) in 0..1) for one uint8 image; default class = top class."""
        probabilities, heatmaps = self.explain_batch(np.asarray(image)[None], class_index)
        return probabilities[0], heatmaps[0]

    def explain_batch(
        self, images: np.ndarray, class_index: int | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, K), Grad-CAM heatmaps (N, h, w) in 0..1) for a uint8 batch; default: each top class."""
        batch = self._checked_batch(images)
        if self._gradcam is None:
            self._gradcam = GradCam(self.model)  # built on first use: predicting alone never needs it
        return self._gradcam(batch, class_index)

    def predict_files(
        self,
        paths: Sequence[str | os.PathLike],
        top_k: int = 5,
        gradcam_dir: str | os.PathLike | None = None,
        batch_size: int = 32,
    ) -> list[dict]:
        """One `predict --json` item per path: top-k and Grad-CAM overlay path, or the reason it failed."""
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        overlay_names = _OverlayNames(Path(gradcam_dir)) if gradcam_dir is not None else None
        results: list[dict] = []
        for start in range(0, len(paths), batch_size):
            results.extend(self._predict_chunk(paths[start:start + batch_size], top_k, overlay_names))
        return results

    def _predict_chunk(self, paths: Sequence, k: int, overlay_names: "_OverlayNames | None") -> list[dict]:
        results: list[dict] = [{"path": str(path)} for path in paths]
        good: list[int] = []
        images, raw_bytes = [], []
        for position, path in enumerate(paths):
            try:
                data = read_image_bytes(path)
                images.append(self.load_image(data))
            except ImageDecodeError as error:
                results[position]["error"] = str(error)
                continue
            good.append(position)
            raw_bytes.append(data if overlay_names else None)
        if not good:
            return results
        batch = np.stack(images)
        familiarity = None
        if overlay_names is not None:
            probabilities, heatmaps = self.explain_batch(batch)
            familiarity = self.unfamiliar(batch)
        elif self.familiarity is not None:
            features, probabilities = self.features_and_probabilities(batch)
            familiarity, heatmaps = self.unfamiliar_of_features(features), [None] * len(good)
        else:
            probabilities, heatmaps = self._predict(batch).numpy(), [None] * len(good)
        familiarity = familiarity or [None] * len(good)
        for position, row, heatmap, data, unlike in zip(good, probabilities, heatmaps, raw_bytes, familiarity):
            results[position]["top_k"] = [{"label": label, "probability": p} for label, p in self.top_k(row, k)]
            results[position]["unfamiliar"] = unlike
            overlay_path = None
            if overlay_names is not None:
                overlay_path = overlay_names.next_path(paths[position])
                write_gradcam_overlay(overlay_path, display_image(data), heatmap)
            results[position]["gradcam"] = str(overlay_path) if overlay_path else None
        return results

    def _checked_batch(self, images: np.ndarray) -> np.ndarray:
        batch = np.asarray(images)
        if batch.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (decode_image's output), got {batch.dtype}")
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise ValueError(
                f"images must have shape (N, {', '.join(map(str, self.input_shape))}) for this model, got {batch.shape}"
            )
        return batch


def top_k_labels(probabilities: np.ndarray, class_names: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """The k most probable (label, probability) pairs of one probability vector, ties in class order."""
    values = np.asarray(probabilities)
    if values.ndim != 1 or len(values) != len(class_names):
        raise ValueError(f"need one probability per class ({len(class_names)}), got shape {values.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    order = np.argsort(-values, kind="stable")[:k]
    return [(class_names[index], float(values[index])) for index in order]


def predict_index(
    model: keras.Model,
    index: DatasetIndex,
    data_config: DataConfig,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
    flip_average: bool = False,
) -> np.ndarray:
    """Probabilities (N, K) for every record of a scanned dataset, in record order (flip_average: see
    compiled_forward)."""
    expected = (data_config.image_size, data_config.image_size, data_config.channels)
    if tuple(model.inputs[0].shape[1:]) != expected:
        raise ModelError(f"the model takes images of shape {tuple(model.inputs[0].shape[1:])}, the data config gives {expected}")
    images = decode_records(index.root, index.records, data_config, progress=progress)
    predict = compiled_forward(model, flip_average)
    chunks = [np.asarray(predict(np.asarray(images[start:start + batch_size]))) for start in range(0, len(images), batch_size)]
    num_classes = int(model.outputs[0].shape[-1])
    return np.concatenate(chunks) if chunks else np.zeros((0, num_classes), np.float32)


@dataclass(frozen=True)
class DatasetPredictions:
    """What a run's model makes of every image of a scanned dataset (index.records order for `features`)."""

    predicted: dict[str, tuple[str, float]]  # path -> (predicted class, its probability)
    features: np.ndarray  # (N, D) float32: the features the classifier reads (similar images by the run's model)


def predict_dataset(predictor: Predictor, index: DatasetIndex, progress: ProgressCallback | None = None
                    ) -> DatasetPredictions:
    """The model's class, confidence and features for every image of a scanned dataset (the Dataset grid's
    filter by what the model thinks, and More like this by the run's model), one forward pass each; decoding
    goes through the pipeline's cache for big datasets."""
    data_config = DataConfig(image_size=predictor.image_size, color_mode=predictor.color_mode)
    images = decode_records(index.root, index.records, data_config, progress=progress)
    predicted: dict[str, tuple[str, float]] = {}
    features = []
    for start in range(0, len(images), DEFAULT_BATCH_SIZE):
        batch_features, batch = predictor.features_and_probabilities(np.asarray(images[start:start + DEFAULT_BATCH_SIZE]))
        features.append(batch_features)
        for record, row in zip(index.records[start:start + DEFAULT_BATCH_SIZE], batch):
            best = int(np.argmax(row))
            predicted[record.path] = (predictor.class_names[best], float(row[best]))
    return DatasetPredictions(predicted, np.concatenate(features) if features else np.zeros((0, 0), np.float32))


def write_gradcam_overlay(path: str | os.PathLike, image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.4) -> None:
    """Write the heatmap blended over the image as a PNG, atomically."""
    overlay = overlay_heatmap(image, heatmap, opacity=opacity)
    atomic_write_with(path, lambda temp_path: Image.fromarray(overlay).save(temp_path, format="PNG"))


class _OverlayNames:
    """`<stem>_gradcam.png` in one folder; a stem seen twice in one call gets a number, never overwrites."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.used: set[str] = set()

    def next_path(self, source: str | os.PathLike) -> Path:
        stem = Path(source).stem or "image"
        name, number = f"{stem}_gradcam.png", 1
        while name in self.used:
            number += 1
            name = f"{stem}_{number}_gradcam.png"
        self.used.add(name)
        return self.folder / name


def _check_model_matches(model: keras.Model, class_names: list[str], input_shape: tuple[int, int, int]) -> None:
    model_shape = tuple(model.inputs[0].shape[1:])
    if model_shape != input_shape:
        raise ModelError(f"the model takes images of shape {model_shape}, the config says {input_shape}")
    num_outputs = model.outputs[0].shape[-1]
    if num_outputs != len(class_names):
        raise ModelError(f"the model predicts {num_outputs} classes but {len(class_names)} class names were given")
