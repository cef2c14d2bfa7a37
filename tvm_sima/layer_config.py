"""The per-layer configuration file (``layers.json``): written by :func:`tvm_sima.quantize`, edited, read back.

:func:`write_layer_config` writes every layer with its effective settings (and the ``tensor:``
overrides, e.g. those of the mixed-precision search); :func:`read_layer_config` turns an edited
file into :class:`~tvm_sima.config.LayerOverride` s, one ``name:`` override per listed layer
(``qconfig(layer_config=path)``).
"""

from __future__ import annotations

import json
import os
from typing import Sequence, Union

from .config import LayerInfo, LayerOverride, QConfig

__all__ = ["LAYER_CONFIG_VERSION", "exact_pattern", "read_layer_config", "write_layer_config"]

LAYER_CONFIG_VERSION = 1


def write_layer_config(path: Union[str, os.PathLike], layers: Sequence[LayerInfo], config: QConfig) -> None:
    """Write the per-layer JSON template: every layer with its effective settings.

    Edit a layer's ``settings`` (or set ``"skip": true``) and pass the file back with
    :func:`read_layer_config`. The configuration's ``tensor:`` overrides (e.g. the tensors the
    mixed-precision search gave 16 bits) follow under ``"tensors"`` (the pattern as written).
    """
    rows = []
    for layer in layers:
        effective, skip = config.for_layer(layer)
        settings = {key: getattr(effective, key) for key in (
            "weight_bits", "activation_bits", "bias_bits", "quantize_method_for_weight",
            "quantize_method_for_activation", "calibration_strategy_for_activation", "requant_mode")}
        rows.append({"id": layer.id, "name": layer.name, "op": layer.op, "source": layer.source, "skip": skip,
                     "settings": settings})
    tensors = [{"tensor": o.match.partition(":")[2], "settings": dict(o.settings)}
               for o in config.layer_overrides if o.match.startswith("tensor:")]
    payload = {"version": LAYER_CONFIG_VERSION, "layers": rows, **({"tensors": tensors} if tensors else {})}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)
        handle.write("\n")


def read_layer_config(path: Union[str, os.PathLike]) -> tuple[LayerOverride, ...]:
    """Overrides from a per-layer JSON file (one ``name:`` override per listed layer).

    Raises
    ------
    ValueError
        Wrong version, malformed JSON or rows, unknown settings; the message names the file and row.
    FileNotFoundError
        If the file does not exist.
    """
    with open(path, encoding="utf-8") as handle:
        try:
            payload = json.load(handle)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(payload, dict) or payload.get("version") != LAYER_CONFIG_VERSION:
        found = payload.get("version") if isinstance(payload, dict) else None
        raise ValueError(f"{path}: layer config version {found!r}; this tvm-sima reads version {LAYER_CONFIG_VERSION}")
    overrides = []
    for index, row in enumerate(payload.get("layers", [])):
        if not isinstance(row, dict) or "name" not in row or not isinstance(row.get("settings", {}), dict):
            raise ValueError(f"{path}: layers[{index}] needs a 'name' and a 'settings' object")
        settings = dict(row.get("settings", {}))
        settings["skip"] = bool(row.get("skip", False))
        try:
            overrides.append(LayerOverride(f"name:{exact_pattern(str(row['name']))}", settings))
        except ValueError as err:
            raise ValueError(f"{path}: layers[{index}] ({row['name']}): {err}") from None
    for index, row in enumerate(payload.get("tensors", [])):
        if not isinstance(row, dict) or "tensor" not in row or not isinstance(row.get("settings", {}), dict):
            raise ValueError(f"{path}: tensors[{index}] needs a 'tensor' and a 'settings' object")
        try:
            overrides.append(LayerOverride(f"tensor:{row['tensor']}", dict(row["settings"])))
        except ValueError as err:
            raise ValueError(f"{path}: tensors[{index}] ({row['tensor']}): {err}") from None
    return tuple(overrides)


def exact_pattern(name: str) -> str:
    """``name`` as an fnmatch pattern that matches only itself (for ``name:`` / ``tensor:`` overrides)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
