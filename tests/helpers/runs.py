"""Run folders for the tests: a tiny run really trained, private copies of it, and runs written by hand."""

from __future__ import annotations

from pathlib import Path

from helpers.files import shapes_tree


def train_tiny_shapes_run(base: Path, epochs: int) -> tuple[Path, Path]:
    """(run folder, dataset) of a small_cnn trained for `epochs` on 16 px grey shapes (12 per class)."""
    import dataclasses

    from imgclf_core.config import NO_AUGMENTATION
    from imgclf_core.data.dataset import scan_dataset
    from imgclf_core.training.run_folder import FINISHED, RunFolder
    from imgclf_core.training.run_setup import RunChoices, build_run_config
    from imgclf_core.training.trainer import train_run

    data = shapes_tree(base / "data", per_class=12)
    choices = RunChoices(model="small_cnn", image_size=16, color_mode="grayscale", batch_size=8,
                         validation_split=0.5, augmentation=NO_AUGMENTATION, epochs=epochs)
    config = build_run_config(data, scan_dataset(data), choices)
    # A progress line per batch, so the pages have live curves to draw.
    config = dataclasses.replace(config, training=dataclasses.replace(config.training, progress_every_batches=1))
    run = RunFolder(base / "runs" / "20260101-000000-small_cnn")
    run.path.mkdir(parents=True)
    run.write_config(config)
    assert train_run(run.path) == FINISHED
    return run.path, data


def copy_run_with_its_data(template_run: Path, template_data: Path, run_dir: Path, data: Path) -> tuple[Path, Path]:
    """Private copies of a trained run and of its dataset, the run's config pointing at the copy."""
    import shutil

    data = Path(shutil.copytree(template_data, data))
    run_dir = Path(shutil.copytree(template_run, run_dir))
    point_run_at(run_dir, data)
    return run_dir, data


def point_run_at(run_dir: Path, data_dir: Path) -> None:
    """Make the run's config name `data_dir` as its dataset (resolved, as the trainer records it)."""
    import dataclasses

    from imgclf_core.training.run_folder import RunFolder

    run = RunFolder(run_dir)
    document = run.read_document()
    run.write_config(dataclasses.replace(document.config, data_dir=str(Path(data_dir).resolve())),
                     document.class_names, document.created_at)


def fake_run(root: Path, name: str, data_dir: Path, state: str | None = None, epochs: int = 3) -> Path:
    """A run folder written by hand: config, status `state` (finished by default) and `epochs` rows of history."""
    from imgclf_core.config import RunConfig, TrainingConfig
    from imgclf_core.training.run_folder import FINISHED, RunFolder

    state = state or FINISHED
    run = RunFolder(root / name)
    run.path.mkdir(parents=True)
    run.write_config(RunConfig(data_dir=str(data_dir.resolve()), training=TrainingConfig(epochs=epochs)))
    run.write_status(state, message=state, epochs=epochs)
    run.write_history([
        {"epoch": epoch, "stage": "full", "loss": 1.0 / epoch, "accuracy": 0.5, "val_loss": 1.0,
         "val_accuracy": 0.6 + epoch / 100, "lr": 1e-3, "seconds": 1.0}
        for epoch in range(1, epochs + 1)
    ])
    return run.path


def evaluation(accuracy: float, matrix: list[list[int]], class_names=("cat", "dog")) -> dict:
    """An evaluation section as the trainer writes it."""
    return {"accuracy": accuracy, "macro_f1": accuracy, "class_names": list(class_names),
            "per_class": {name: {"precision": accuracy, "recall": accuracy, "f1": accuracy, "support": sum(row)}
                          for name, row in zip(class_names, matrix)},
            "confusion_matrix": matrix}


UNTRAINED_CLASS_NAMES = ["circle", "square", "triangle"]
UNTRAINED_IMAGE_SIZE = 32


def write_untrained_run(run_dir: Path, with_model: bool = True) -> Path:
    """A run folder as the trainer leaves it, with an untrained (seeded) small_cnn for three classes at 32 px RGB."""
    import keras

    from imgclf_core.config import DataConfig, ModelConfig, RunConfig
    from imgclf_core.models.registry import create_model
    from imgclf_core.training.run_folder import RunFolder

    run_config = RunConfig(
        data_dir="/nowhere", data=DataConfig(image_size=UNTRAINED_IMAGE_SIZE, color_mode="rgb"),
        model=ModelConfig(name="small_cnn", weights="none"),
    )
    run = RunFolder(run_dir)
    run.path.mkdir(parents=True)
    run.write_config(run_config, UNTRAINED_CLASS_NAMES)
    if with_model:
        keras.utils.set_random_seed(0)
        run.save_model(create_model(run_config.model, len(UNTRAINED_CLASS_NAMES), UNTRAINED_IMAGE_SIZE, 3))
    return run_dir
