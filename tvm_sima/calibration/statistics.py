"""Statistics files: observers' states saved to one ``.npz`` (arrays plus a JSON index) and restored."""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any, Union

import numpy as np

from .observers import Observer, make_observer

__all__ = ["save_statistics", "load_statistics"]


def _to_json(value: Any, arrays: dict[str, np.ndarray], key: str) -> Any:
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, dict):
        return {k: _to_json(v, arrays, f"{key}.{k}") for k, v in value.items()}
    return value


def _from_json(value: Any, arrays: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return {k: _from_json(v, arrays) for k, v in value.items()}
    return value


def save_statistics(path: Union[str, os.PathLike], observers: dict[str, Observer]) -> None:
    """Write observers' states to ``path`` (.npz: arrays plus a JSON index), keyed by tensor name."""
    arrays: dict[str, np.ndarray] = {}
    index = {name: _to_json(obs.state_dict(), arrays, name) for name, obs in observers.items()}
    arrays["__index__"] = np.frombuffer(json.dumps(index).encode(), dtype=np.uint8)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds too narrowly


def load_statistics(path: Union[str, os.PathLike]) -> dict[str, Observer]:
    """Observers restored from :func:`save_statistics`, ready for ``compute_qparams`` or more ``update``s."""
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a tvm-sima statistics file ({err})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):  # a plain .npy array
        raise ValueError(f"{path}: not a tvm-sima statistics file (an array, not a statistics.npz)")
    with data:
        if "__index__" not in data.files:
            raise ValueError(f"{path}: not a tvm-sima statistics file (no index)")
        index = json.loads(bytes(data["__index__"]).decode())
        restored = {}
        for name, raw in index.items():
            state = _from_json(raw, data)
            obs = make_observer(state["name"], state["tensor"], axis=state["axis"], **state["options"])
            obs.load_state_dict(state)
            restored[name] = obs
    return restored
