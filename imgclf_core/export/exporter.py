"""Export a run's model as .keras, SavedModel or TFLite, checked against the run's own Keras model.

```
OUT/
  model.keras | saved_model/ | model.tflite (+ model-float16.tflite with float16=True,
                                             + model-int8.tflite with int8=True)
  labels.txt      one class per line, in the order of the model's outputs
  model_card.md   data, classes, metrics, config, parity, date, package versions
  parity.json     the ExportReport: the golden images and the figures of each artifact
```
Every artifact takes float32 raw pixel values 0-255 of shape (N, S, S, C) and returns softmax
probabilities (N, K): the rescaling lives inside the model. Parity: golden images from the run's
validation set, decoded by `decode_image`, go through the Keras model and through the artifact as
a user loads it; a top-1 difference on any image, or a probability difference above the format's
tolerance, raises ExportParityError. float16 TFLite weights, and the full-integer (int8) TFLite model
quantized with activation ranges from REPRESENTATIVE_COUNT training images, are measured and reported;
they fail the export only when broken (non-finite output or a difference above FLOAT16_BROKEN_DIFFERENCE,
INT8_BROKEN_DIFFERENCE). The model exported is the calibrated one (the run's temperature folded into its
last layer, see training.calibration), the one predict and the pages use.

Everything is written into a hidden folder beside OUT and renamed into place only after parity
passes, so a failed export leaves nothing. OUT may be missing, an empty folder, or a previous
export (recognised by its parity.json; it is then replaced as a whole); anything else is refused,
so an export never deletes files it did not write. Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
import uuid
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from imgclf_core import __version__
from imgclf_core.config import RunConfig, config_to_dict
from imgclf_core.fileio import fsync_folder
from imgclf_core.training.run_folder import RunFolder, now_iso, package_versions

FORMATS = ("keras", "savedmodel", "tflite")
ARTIFACT_NAMES = {"keras": "model.keras", "savedmodel": "saved_model", "tflite": "model.tflite"}
FLOAT16_ARTIFACT_NAME = "model-float16.tflite"
INT8_ARTIFACT_NAME = "model-int8.tflite"
# Largest allowed |p_artifact - p_keras| on any class of any golden image.
TOLERANCES = {"keras": 1e-6, "savedmodel": 1e-4, "tflite": 1e-2}
# float16 weights are expected to move probabilities by ~1e-3; ten times the float TFLite tolerance
# means the conversion is broken, not merely less precise.
FLOAT16_BROKEN_DIFFERENCE = 0.1
# Full-integer quantization moves probabilities by a few percent; a difference this large means broken.
INT8_BROKEN_DIFFERENCE = 0.5
REPRESENTATIVE_COUNT = 200  # training images that set the int8 model's activation ranges
DEFAULT_GOLDEN_COUNT = 32
INPUT_NAME, OUTPUT_NAME, SIGNATURE_NAME = "images", "probabilities", "serving_default"
LABELS_FILE_NAME, MODEL_CARD_FILE_NAME, PARITY_FILE_NAME = "labels.txt", "model_card.md", "parity.json"
PREDICT_BATCH_SIZE = 64
LOADING_HINTS = {
    "keras": "`keras.saving.load_model(\"model.keras\")`, then `model.predict(images)`.",
    "savedmodel": f"`tf.saved_model.load(\"saved_model\").signatures[\"{SIGNATURE_NAME}\"]`, "
                  f"called as `signature({INPUT_NAME}=images)[\"{OUTPUT_NAME}\"]`.",
    "tflite": f"`tf.lite.Interpreter(model_path=\"model.tflite\").get_signature_runner(\"{SIGNATURE_NAME}\")`, "
              f"called as `runner({INPUT_NAME}=images)[\"{OUTPUT_NAME}\"]`.",
}

ProgressCallback = Callable[[str], None]


class ExportError(ValueError):
    """An export cannot be made: unknown format, an output folder it must not touch, no golden images."""


@dataclass(frozen=True)
class ArtifactParity:
    """How one exported artifact agrees with the run's Keras model on the golden images."""

    artifact: str  # file or folder name inside the export folder
    size_bytes: int
    golden_images: int
    top1_matches: int
    max_probability_difference: float  # inf when the artifact returned a non-finite value
    worst_image: str  # dataset-relative path: a top-1 mismatch if any, else the largest difference
    tolerance: float
    top1_required: bool  # False for float16: its top-1 agreement is reported, not enforced

    @property
    def top1_agreement(self) -> float:
        return self.top1_matches / self.golden_images

    @property
    def passed(self) -> bool:
        top1_ok = self.top1_matches == self.golden_images or not self.top1_required
        return top1_ok and self.max_probability_difference <= self.tolerance

    def describe(self) -> str:
        """One line: top-1 agreement, largest difference and tolerance."""
        return (f"{self.artifact}: top-1 agrees on {self.top1_matches}/{self.golden_images} golden images, "
                f"max probability difference {self.max_probability_difference:.2e} "
                f"(tolerance {self.tolerance:.0e}), worst image {self.worst_image}")

    def to_json_dict(self) -> dict:
        difference = self.max_probability_difference
        return {
            "artifact": self.artifact, "size_bytes": self.size_bytes, "golden_images": self.golden_images,
            "top1_matches": self.top1_matches, "top1_agreement": self.top1_agreement,
            "max_probability_difference": difference if np.isfinite(difference) else None,
            "worst_image": self.worst_image, "tolerance": self.tolerance,
            "top1_required": self.top1_required, "passed": self.passed,
        }


class ExportParityError(ExportError):
    """The exported artifact disagrees with the run's Keras model on the golden images."""

    def __init__(self, parity: ArtifactParity):
        super().__init__(f"the export does not match the Keras model: {parity.describe()}")
        self.parity = parity


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how its artifacts agree with the run's Keras model."""

    run_dir: Path
    format: str
    out_dir: Path
    parity: ArtifactParity
    float16: ArtifactParity | None
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    golden_paths: tuple[str, ...]
    exported_at: str
    seconds: float
    int8: ArtifactParity | None = None

    @property
    def artifact_path(self) -> Path:
        return self.out_dir / self.parity.artifact

    def to_json_dict(self) -> dict:
        """The `imgclf export --json` document (parity.json is the same without the local paths)."""
        return {
            "run_dir": str(self.run_dir), "out_dir": str(self.out_dir), "run": self.run_dir.name,
            "format": self.format, "artifact_path": str(self.artifact_path),
            "parity": self.parity.to_json_dict(),
            "float16": self.float16.to_json_dict() if self.float16 else None,
            "int8": self.int8.to_json_dict() if self.int8 else None,
            "class_names": list(self.class_names),
            "input": {"shape": [None, *self.input_shape], "dtype": "float32", "range": [0, 255]},
            "golden_images": list(self.golden_paths),
            "exported_at": self.exported_at, "seconds": round(self.seconds, 3),
        }


def export_run(
    run_dir: str | os.PathLike,
    format: str,
    out_dir: str | os.PathLike,
    *,
    float16: bool = False,
    golden_count: int = DEFAULT_GOLDEN_COUNT,
    progress: ProgressCallback | None = None,
    int8: bool = False,
) -> ExportReport:
    """Export a run's model into `out_dir` and check it against the Keras model; raises ExportParityError."""
    started = time.monotonic()
    say = progress or (lambda message: None)
    _check_request(format, float16, golden_count, int8)
    run_path, target = Path(run_dir), Path(out_dir)
    check_export_target(target)
    # A missing run or model is refused before TensorFlow loads (seconds, on a small machine).
    run_config, _ = RunFolder(run_path).read_trained_config()
    if not RunFolder(run_path).has_model():
        raise ExportError(f"no trained model in {run_path} yet (no {RunFolder.MODEL})")
    from imgclf_core.inspection.predict import Predictor

    say("loading the run's model")
    predictor = Predictor.from_run(run_path)
    _check_labels(predictor.class_names)
    golden_paths, golden = golden_images(run_path, run_config, predictor, golden_count)
    say(f"running {len(golden_paths)} golden images through the Keras model")
    reference = predictor.predict_arrays(golden)
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not mkdtemp: the export folder gets the user's usual permissions, not 0700.
    staging = target.parent / f".{target.name}.export-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        representative = representative_images(run_path, run_config, predictor) if int8 else None
        parity, float16_parity, int8_parity = _write_checked_artifacts(
            staging, format, float16, predictor.model, run_path, golden, golden_paths, reference, say, representative
        )
        report = ExportReport(
            run_dir=run_path, format=format, out_dir=target, parity=parity, float16=float16_parity,
            class_names=tuple(predictor.class_names), input_shape=predictor.input_shape,
            golden_paths=tuple(golden_paths), exported_at=now_iso(), seconds=time.monotonic() - started,
            int8=int8_parity,
        )
        _write_companions(staging, report, run_config)
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"exported to {target}")
    return report


def check_export_target(target: Path) -> None:
    """Refuse an output path that is a file, or a non-empty folder that is not a previous export."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ExportError(f"{target} exists and is not a folder: pick a new or empty folder for --out")
    if target.is_dir() and any(target.iterdir()) and not (target / PARITY_FILE_NAME).is_file():
        raise ExportError(
            f"{target} is not empty and holds no previous export (no {PARITY_FILE_NAME}): pick a new or empty folder"
        )


def default_export_dir(run_dir: str | os.PathLike, format: str) -> Path:
    """RUN_DIR/exports/<format>: where the app exports."""
    return RunFolder(run_dir).export_dir(format)


def _check_request(format: str, float16: bool, golden_count: int, int8: bool = False) -> None:
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}: choose one of {', '.join(FORMATS)}")
    for name, asked in (("float16", float16), ("int8", int8)):
        if asked and format != "tflite":
            raise ExportError(f"{name} applies to the tflite format only, not {format}")
    if golden_count < 1:
        raise ExportError(f"need at least one golden image, got {golden_count}")


def _check_labels(class_names: Sequence[str]) -> None:
    bad = [name for name in class_names if "\n" in name or "\r" in name]
    if bad:
        raise ExportError(f"class name {bad[0]!r} holds a line break: labels.txt has one class per line")


# ---------------------------------------------------------------- golden images


def golden_candidates(run_dir: Path, run_config: RunConfig) -> list[str]:
    """Dataset-relative validation paths in golden order: round-robin over classes, each class in path order."""
    rows = RunFolder(run_dir).read_predictions()
    labelled = [(row["path"], row["true"]) for row in rows] if rows else _validation_from_scan(run_config)
    by_class: dict[str, list[str]] = defaultdict(list)
    for path, label in sorted(labelled):
        by_class[label].append(path)
    # Round-robin so that the first N images cover every class, not just the first folder.
    queues = [by_class[label] for label in sorted(by_class)]
    return [path for group in itertools.zip_longest(*queues) for path in group if path is not None]


def golden_images(
    run_dir: Path, run_config: RunConfig, predictor, count: int
) -> tuple[list[str], np.ndarray]:
    """(paths, uint8 batch) of the first `count` golden candidates that decode; ExportError if none do."""
    from imgclf_core.data.images import ImageDecodeError

    root = Path(run_config.data_dir)
    candidates = golden_candidates(run_dir, run_config)
    paths, images, first_error = [], [], None
    for path in candidates:
        try:
            images.append(predictor.load_image(root / path))
        except (ImageDecodeError, OSError) as error:
            first_error = first_error or f"{path}: {error}"
            continue
        paths.append(path)
        if len(paths) == count:
            break
    if not paths:
        detail = f" (first: {first_error})" if first_error else ""
        raise ExportError(f"no golden image could be read from the validation images in {root}{detail}")
    return paths, np.stack(images)


def representative_images(run_dir: Path, run_config: RunConfig, predictor, count: int = REPRESENTATIVE_COUNT) -> np.ndarray:
    """Up to `count` of the run's training images (its manifest's train split, evenly spread), decoded for the
    model: the int8 model's activation ranges come from them. Falls back to the golden candidates."""
    from imgclf_core.data.images import ImageDecodeError

    manifest = RunFolder(run_dir).read_manifest() or []
    paths = [row.path for row in manifest if row.split == "train"] or golden_candidates(run_dir, run_config)
    chosen = paths[::max(1, len(paths) // count)][:count]
    images = []
    for path in chosen:
        try:
            images.append(predictor.load_image(Path(run_config.data_dir) / path))
        except (ImageDecodeError, OSError):
            continue
    if not images:
        raise ExportError(f"no training image could be read from {run_config.data_dir} for the int8 model")
    return np.stack(images)


def _validation_from_scan(run_config: RunConfig) -> list[tuple[str, str]]:
    """(path, label) of the run's validation split, re-made from its dataset (a run without predictions.csv)."""
    from imgclf_core.data.dataset import scan_dataset
    from imgclf_core.data.split import split_records

    index = scan_dataset(run_config.data_dir)
    splits = split_records(index.records, run_config.data.validation_split, run_config.data.seed)
    # A run trained without a validation split still has images the model never failed on purpose.
    return [(record.path, record.label) for record in (splits.validation or splits.train)]


# ---------------------------------------------------------------- artifacts


def _write_checked_artifacts(
    staging: Path, format: str, float16: bool, model, run_dir: Path,
    golden: np.ndarray, golden_paths: list[str], reference: np.ndarray, say: ProgressCallback,
    representative: np.ndarray | None = None,
) -> tuple[ArtifactParity, ArtifactParity | None, ArtifactParity | None]:
    """Write the artifact (and the float16 and int8 ones), measure each; ExportParityError when one fails."""
    artifact = staging / ARTIFACT_NAMES[format]
    say(f"writing {artifact.name}")
    if format == "keras":
        from imgclf_core.models.model_io import save_model_atomically

        save_model_atomically(model, artifact)  # the calibrated model, not model.keras as trained
    elif format == "savedmodel":
        write_saved_model(model, artifact)
    else:
        saved_model = staging / ".saved_model-for-tflite"
        write_saved_model(model, saved_model)
        write_tflite(saved_model, artifact)
        if float16:
            say(f"writing {FLOAT16_ARTIFACT_NAME}")
            write_tflite(saved_model, staging / FLOAT16_ARTIFACT_NAME, float16=True)
        if representative is not None:
            say(f"writing {INT8_ARTIFACT_NAME} (activation ranges from {len(representative)} training images)")
            write_tflite(saved_model, staging / INT8_ARTIFACT_NAME, representative=representative)
        shutil.rmtree(saved_model)
    say(f"checking {artifact.name} on {len(golden_paths)} golden images")
    parity = measure_parity(artifact, reference, artifact_probabilities(artifact, golden), golden_paths,
                            TOLERANCES[format], top1_required=True)
    if not parity.passed:
        raise ExportParityError(parity)
    float16_parity = (_measured_reduced(staging / FLOAT16_ARTIFACT_NAME, FLOAT16_BROKEN_DIFFERENCE, reference, golden,
                                        golden_paths, say) if float16 else None)
    int8_parity = (_measured_reduced(staging / INT8_ARTIFACT_NAME, INT8_BROKEN_DIFFERENCE, reference, golden,
                                     golden_paths, say) if representative is not None else None)
    return parity, float16_parity, int8_parity


def _measured_reduced(artifact: Path, broken_difference: float, reference: np.ndarray, golden: np.ndarray,
                      golden_paths: list[str], say: ProgressCallback) -> ArtifactParity:
    """A reduced-precision artifact (float16, int8) measured and reported; ExportParityError only when broken."""
    say(f"measuring {artifact.name} on {len(golden_paths)} golden images")
    parity = measure_parity(artifact, reference, artifact_probabilities(artifact, golden), golden_paths,
                            broken_difference, top1_required=False)
    if not parity.passed:
        raise ExportParityError(parity)
    return parity


def write_saved_model(model, path: Path) -> None:
    """A SavedModel whose `serving_default` signature maps float32 `images` 0-255 to `probabilities`."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda images: {OUTPUT_NAME: tf.cast(model(images, training=False), tf.float32)},
        input_signature=[tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name=INPUT_NAME)],
    )
    archive.write_out(str(path), verbose=False)


def write_tflite(saved_model: Path, path: Path, float16: bool = False, representative: np.ndarray | None = None) -> None:
    """Convert a SavedModel to a float32 TFLite file (float16 weights with `float16=True`; with `representative`
    uint8 images, full-integer quantization: int8 weights and activations, float32 input and output)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if float16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        flatbuffer = converter.convert()
    except Exception as error:  # noqa: BLE001 - the converter raises assorted internal error types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ExportError(f"cannot convert the model to TFLite: {type(error).__name__}: {first_line[:300]}") from error
    path.write_bytes(flatbuffer)


def artifact_probabilities(artifact: Path, images: np.ndarray) -> np.ndarray:
    """Probabilities (N, K) of an exported artifact for a uint8 batch, loaded the way a user loads it."""
    batches = [images[start:start + PREDICT_BATCH_SIZE] for start in range(0, len(images), PREDICT_BATCH_SIZE)]
    if artifact.suffix == ".keras":
        from imgclf_core.models.model_io import load_model_checked
        from imgclf_core.models.forward import compiled_forward

        predict = compiled_forward(load_model_checked(artifact))
        return np.concatenate([predict(batch).numpy() for batch in batches])
    pixels = [batch.astype(np.float32) for batch in batches]
    if artifact.suffix == ".tflite":
        runner = _tflite_interpreter(artifact).get_signature_runner(SIGNATURE_NAME)
        return np.concatenate([runner(**{INPUT_NAME: batch})[OUTPUT_NAME] for batch in pixels])
    import tensorflow as tf

    signature = tf.saved_model.load(str(artifact)).signatures[SIGNATURE_NAME]
    return np.concatenate([signature(**{INPUT_NAME: tf.constant(batch)})[OUTPUT_NAME].numpy() for batch in pixels])


def _tflite_interpreter(path: Path):
    import tensorflow as tf

    # Its successor (ai_edge_litert) is not a dependency here; the warning would only be noise.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        return tf.lite.Interpreter(model_path=str(path))


def measure_parity(
    artifact: Path, reference: np.ndarray, candidate: np.ndarray, golden_paths: Sequence[str],
    tolerance: float, top1_required: bool,
) -> ArtifactParity:
    """Compare an artifact's probabilities with the Keras model's on the same golden images."""
    candidate = np.asarray(candidate, dtype=np.float64)
    if candidate.shape != reference.shape:
        raise ExportError(f"{artifact.name} returns shape {candidate.shape}, the Keras model {reference.shape}")
    difference = np.abs(candidate - reference).max(axis=1)
    difference[~np.isfinite(candidate).all(axis=1)] = np.inf
    mismatched = reference.argmax(axis=1) != candidate.argmax(axis=1)
    # The worst image: a top-1 mismatch if there is one, and among those the largest difference.
    worst = int(np.lexsort((difference, mismatched))[-1])
    return ArtifactParity(
        artifact=artifact.name, size_bytes=_size_bytes(artifact), golden_images=len(golden_paths),
        top1_matches=int((~mismatched).sum()), max_probability_difference=float(difference.max()),
        worst_image=golden_paths[worst], tolerance=tolerance, top1_required=top1_required,
    )


def _size_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


# ---------------------------------------------------------------- labels, model card, parity.json


def _write_companions(staging: Path, report: ExportReport, run_config: RunConfig) -> None:
    (staging / LABELS_FILE_NAME).write_text("".join(f"{name}\n" for name in report.class_names), encoding="utf-8")
    run = RunFolder(report.run_dir)
    card = model_card_markdown(report, run_config, run.read_evaluation(), run.read_document().versions)
    (staging / MODEL_CARD_FILE_NAME).write_text(card, encoding="utf-8")
    # Without the local paths: the folder is meant to be zipped and shared.
    document = {key: value for key, value in report.to_json_dict().items()
                if key not in ("run_dir", "out_dir", "artifact_path")}
    (staging / PARITY_FILE_NAME).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n",
                                            encoding="utf-8")


def model_card_markdown(report: ExportReport, run_config: RunConfig, evaluation: dict | None,
                        training_versions: dict) -> str:
    """model_card.md: what the model takes and returns, its data, classes, metrics, parity, config, versions."""
    size, _, channels = report.input_shape
    colour = "RGB" if channels == 3 else "grayscale"
    lines = [
        f"# Model card: {report.run_dir.name}",
        "",
        f"Exported by imgclf {__version__} on {report.exported_at} as **{report.format}** "
        f"(`{report.parity.artifact}`), from the run `{report.run_dir.name}` (model `{run_config.model.name}`).",
        "",
        "## Input and output",
        f"- Input: float32 array of shape (N, {size}, {size}, {channels}): raw {colour} pixel values 0-255. "
        "The rescaling is inside the model; do not normalise.",
        f"- imgclf decodes an image with EXIF orientation applied, transparency composited on white, "
        f"converted to {colour} and resized to {size}x{size} with Pillow's bilinear filter.",
        f"- Output: softmax probabilities of shape (N, {len(report.class_names)}), "
        f"in the order of `{LABELS_FILE_NAME}`.",
        f"- Load it: {LOADING_HINTS[report.format]}",
        "",
        "## Data",
        f"- Dataset folder: `{Path(run_config.data_dir).name}`, {len(report.class_names)} classes, "
        f"validation split {run_config.data.validation_split:g} by content hash (seed {run_config.data.seed}).",
    ]
    lines += _metrics_lines(report.class_names, evaluation)
    lines += ["", "## Parity with the run's Keras model",
              f"{report.parity.golden_images} golden validation images, decoded by imgclf's decode function.",
              "", "| artifact | size | top-1 agreement | max probability difference | limit |", "|---|---|---|---|---|"]
    for parity in filter(None, (report.parity, report.float16, report.int8)):
        limit = f"{parity.tolerance:.0e}" + ("" if parity.top1_required else " (reported; fails only if broken)")
        lines.append(f"| `{parity.artifact}` | {parity.size_bytes / 1e6:.2f} MB | {parity.top1_matches}/"
                     f"{parity.golden_images} | {parity.max_probability_difference:.2e} | {limit} |")
    config = config_to_dict(run_config)
    # The local path of the dataset stays on this machine; the folder name says enough.
    config["data_dir"] = Path(run_config.data_dir).name
    lines += ["", "## Training configuration", "```json", json.dumps(config, indent=1), "```",
              "", "## Package versions", "| package | trained with | exported with |", "|---|---|---|"]
    exported_versions = package_versions()
    for package in sorted(set(training_versions) | set(exported_versions)):
        trained, exported = training_versions.get(package, "–"), exported_versions.get(package, "–")
        lines.append(f"| {package} | {trained} | {exported} |")
    return "\n".join(lines) + "\n"


def _metrics_lines(class_names: Sequence[str], evaluation: dict | None) -> list[str]:
    if evaluation is None:
        return ["", "## Classes", *(f"- {name}" for name in class_names), "",
                "## Metrics", "- No evaluation yet (the run has no evaluation.json)."]
    support = sum(scores["support"] for scores in evaluation["per_class"].values())
    lines = ["", "## Metrics (validation images)",
             f"- Accuracy {evaluation['accuracy']:.4f}, macro F1 {evaluation.get('macro_f1', float('nan')):.4f} "
             f"on {support} validation images.",
             "", "## Classes", "| # | class | precision | recall | F1 | support |", "|---|---|---|---|---|---|"]
    for number, name in enumerate(class_names):
        scores = evaluation["per_class"].get(name, {})
        lines.append(f"| {number} | {name} | {scores.get('precision', 0):.3f} | {scores.get('recall', 0):.3f} | "
                     f"{scores.get('f1', 0):.3f} | {scores.get('support', 0)} |")
    return lines


# ---------------------------------------------------------------- into place


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename the finished export to `target`; a previous export there is replaced as a whole."""
    _fsync_files(staging)
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    retired = None
    if target.exists():
        retired = target.parent / f".{target.name}.replaced-{uuid.uuid4().hex[:8]}"
        os.rename(target, retired)
    try:
        os.rename(staging, target)
    except BaseException:
        if retired is not None:
            os.rename(retired, target)
        raise
    fsync_folder(target.parent)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _fsync_files(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for path in [folder, *(item for item in folder.rglob("*") if item.is_dir())]:
        fsync_folder(path)
