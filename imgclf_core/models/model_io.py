"""Save and load `.keras` model files safely: atomic writes, checked loads.

Loading never runs code from the file (`safe_mode=True`, Lambda layers refused before Keras sees
them) and says what is wrong in words: a missing file, a corrupt archive, a model with the wrong
number of classes. Importing this module does not import TensorFlow; loading a model does.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from imgclf_core.fileio import atomic_write_with
from imgclf_core.models.errors import ModelError

if TYPE_CHECKING:
    import keras

DEFAULT_MAX_MODEL_BYTES = 1024**3
# config.json inside a .keras archive is a few hundred kB even for big backbones; more is a zip bomb.
MAX_ARCHIVE_CONFIG_BYTES = 64 * 1024**2
# What a damaged archive or weights file raises somewhere inside zipfile, h5py or json.
_DAMAGED_FILE_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, json.JSONDecodeError)


def save_model_atomically(model: "keras.Model", path: str | os.PathLike) -> None:
    """Save `model` as a .keras file via a temp file in the same folder, fsync and os.replace."""
    import keras

    target = Path(path)
    if target.suffix != ".keras":
        raise ValueError(f"a model file name must end in .keras, got {target}")
    atomic_write_with(target, lambda temp_path: keras.saving.save_model(model, temp_path))


def load_model_checked(
    path: str | os.PathLike,
    expected_num_classes: int | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_MODEL_BYTES,
    compile: bool = False,
) -> "keras.Model":
    """Load a .keras file in safe mode, refusing missing, oversized, corrupt, code-running or mis-sized models."""
    model_path = Path(path)
    _check_model_file(model_path, max_bytes)
    config = _read_archive_config(model_path)
    _refuse_lambda_layers(config, model_path)
    _refuse_custom_objects(config, model_path)
    model = _load_with_keras(model_path, compile)
    _check_output_size(model, model_path, expected_num_classes)
    return model


def _check_model_file(path: Path, max_bytes: int) -> None:
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    if path.suffix != ".keras":
        raise ModelError(f"not a .keras model file: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise ModelError(f"model file too large: {path} is {size} bytes, limit {max_bytes}")


def _read_archive_config(path: Path) -> dict:
    """The model's config.json, read straight from the zip: proves the archive is whole before Keras opens it."""
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise ModelError(f"corrupt model file: {path} (a zip, but not a Keras model: no config.json)")
            # Keras may read a member only in part; a CRC pass over all of them finds damage anywhere.
            damaged_member = archive.testzip()
            if damaged_member is not None:
                raise ModelError(f"corrupt model file: {path} ({damaged_member} fails its CRC check)")
            info = archive.getinfo("config.json")
            if info.file_size > MAX_ARCHIVE_CONFIG_BYTES:
                raise ModelError(f"corrupt model file: {path} (config.json claims {info.file_size} bytes)")
            config = json.loads(archive.read(info).decode("utf-8"))
    except ModelError:
        raise
    except (*_DAMAGED_FILE_ERRORS, UnicodeDecodeError) as error:
        raise ModelError(f"corrupt model file: {path} ({_describe(error)})") from error
    if not isinstance(config, dict):
        raise ModelError(f"corrupt model file: {path} (config.json is not an object)")
    return config


def _refuse_lambda_layers(config: dict, path: Path) -> None:
    # Keras' safe mode only refuses Python-lambda bytecode; a Lambda naming any importable function
    # still runs it, so every Lambda layer is refused.
    names = [layer.get("config", {}).get("name", "?") for layer in _layer_configs(config) if _is_lambda(layer)]
    if names:
        raise ModelError(
            f"refused to load {path}: Lambda layers run arbitrary code ({', '.join(names)}); "
            "rebuild the model from registered layers"
        )


def _refuse_custom_objects(config: dict, path: Path) -> None:
    # A custom class means code from outside Keras: Keras would import its module (or fail halfway),
    # so only objects that Keras itself defines are loaded.
    custom = sorted({
        f"{node.get('class_name')} ({node.get('module')})"
        for node in _layer_configs(config) if not _is_keras_module(node.get("module"))
    })
    if custom:
        raise ModelError(
            f"refused to load {path}: custom objects are code from outside Keras ({', '.join(custom[:5])}); "
            "only models built from Keras' own layers can be loaded"
        )


def _is_keras_module(module: Any) -> bool:
    return module is None or (isinstance(module, str) and (module == "keras" or module.startswith("keras.")))


def _is_lambda(layer: dict) -> bool:
    return layer.get("class_name") == "Lambda"


def _layer_configs(node: Any) -> Iterator[dict]:
    """Every dict with a class_name anywhere in a serialized config (nested models included)."""
    if isinstance(node, dict):
        if "class_name" in node:
            yield node
        for value in node.values():
            yield from _layer_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _layer_configs(value)


def _load_with_keras(path: Path, compile: bool) -> "keras.Model":
    import keras

    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except _DAMAGED_FILE_ERRORS as error:
        raise ModelError(f"corrupt model file: {path} ({_describe(error)})") from error
    except (ValueError, TypeError) as error:
        message = str(error)
        if "safe_mode" in message or "arbitrary code" in message:
            raise ModelError(f"refused to load {path}: it asks to run arbitrary code ({message[:200]})") from error
        raise ModelError(f"cannot load model file {path}: {_describe(error)}") from error


def _check_output_size(model: "keras.Model", path: Path, expected_num_classes: int | None) -> None:
    if len(model.outputs) != 1:
        raise ModelError(f"{path}: a classifier has one output, this model has {len(model.outputs)}")
    num_outputs = model.outputs[0].shape[-1]
    if expected_num_classes is not None and num_outputs != expected_num_classes:
        raise ModelError(
            f"{path}: the model predicts {num_outputs} classes but {expected_num_classes} class names were given"
        )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error)[:300]}"
