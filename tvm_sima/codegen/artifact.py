"""The sima program artifact: a versioned JSON graph plus the weights in ``.npz``.

``program.json``::

    {"format": "tvm-sima-program", "version": 1, "name": ...,
     "inputs": [tensor names], "outputs": [tensor names],
     "tensors": {name: {"shape": [...], "dtype": "int8", "constant": bool,
                        "quantization": {"scale": [...], "zero_point": [...], "axis", "qmin", "qmax",
                                         "dtype", "kind"} or null}},
     "ops": [{"op": "sima.conv2d", "name": ..., "inputs": [names or JSON literals], "outputs": [name],
              "attrs": {...}}]}

``weights.npz`` holds every constant tensor under its name. A tensor's quantization comes from
the ``sima.quantize_info`` that follows it (the identity op is not kept in ``ops``).
:func:`run_program` executes an artifact with NumPy (the oracle a codegen is checked against).
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import numpy as np

__all__ = ["FORMAT", "VERSION", "Program", "ProgramError", "program_from_function", "write_program",
           "load_program", "check_graph", "run_program", "NUMPY_OPS"]

FORMAT = "tvm-sima-program"
VERSION = 1


class ProgramError(ValueError):
    """An artifact that cannot be read or run: says which file and what is wrong."""


@dataclass
class Program:
    """An artifact in memory: the JSON graph (``graph``) and the constants (``weights``)."""

    graph: dict
    weights: dict[str, np.ndarray] = field(default_factory=dict)


def _json_value(value: Any) -> Any:
    """TVM attribute values (ints, floats, strings, arrays, GenericConst) as JSON."""
    import tvm

    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, tvm.ir.GenericConst):
        return value.value.numpy().tolist()  # type: ignore[attr-defined]
    if hasattr(value, "value") and isinstance(value.value, (int, float)):
        return value.value
    try:
        return [_json_value(v) for v in value]
    except TypeError:
        return str(value)


def _attrs(attrs: Any) -> dict:
    """An op's attributes as JSON: DictAttrs by key, typed attrs (Relax ops) by their fields."""
    if attrs is None:
        return {}
    if hasattr(attrs, "keys"):
        return {k: _json_value(attrs[k]) for k in attrs.keys()}
    fields = [f for f in dir(attrs) if not f.startswith("_") and f != "id_" and not callable(getattr(attrs, f))]
    return {f: _json_value(getattr(attrs, f)) for f in fields}


def program_from_function(func: Any, name: str = "main") -> Program:
    """The artifact of a Relax function of sima ops (a partitioned function, or a converted ``main``)."""
    import tvm
    from tvm import relax

    from ..graph import GraphIndex, op_name

    index = GraphIndex(func)
    tensors: dict[str, dict] = {}
    weights: dict[str, np.ndarray] = {}
    alias: dict[str, str] = {}
    tuples: dict[str, list] = {}
    ops: list[dict] = []

    def describe(var: Any) -> dict:
        ty = var.ty
        return {"shape": [int(d) for d in ty.shape], "dtype": str(ty.dtype), "constant": False,
                "quantization": None}

    def operand(arg: Any) -> Any:
        if isinstance(arg, relax.Var):
            return alias.get(arg.name, arg.name)
        if isinstance(arg, tvm.ir.GenericConst):
            key = f"const{len(weights)}"
            data = arg.value.numpy()  # type: ignore[attr-defined]
            weights[key] = data
            tensors[key] = {"shape": list(data.shape), "dtype": str(data.dtype), "constant": True,
                            "quantization": None}
            return key
        if isinstance(arg, relax.Tuple):
            return [operand(f) for f in arg.fields]
        return {"literal": _json_value(getattr(arg, "values", getattr(arg, "value", arg)))}

    for param in func.params:
        tensors[param.name] = describe(param)
    for var, value in index.producer.items():
        op = op_name(value)
        if isinstance(value, relax.Var):
            alias[var.name] = alias.get(value.name, value.name)
            continue
        if isinstance(value, relax.Tuple):  # several results (e.g. a region's outputs)
            tuples[var.name] = [operand(f) for f in value.fields]
            continue
        if op is None:
            raise ProgramError(f"'{var.name}': only calls of registered ops can go into a program, got "
                               f"{type(value).__name__}")
        assert isinstance(value, relax.Call)
        attrs = _attrs(value.attrs)
        if op == "sima.quantize_info":
            source = operand(value.args[0])
            alias[var.name] = source
            tensors[source]["quantization"] = {k: attrs[k] for k in ("scale", "zero_point", "axis", "qmin", "qmax",
                                                                     "dtype", "kind", "name")}
            continue
        ops.append({"op": op, "name": var.name, "inputs": [operand(a) for a in value.args],
                    "outputs": [var.name], "attrs": attrs})
        tensors[var.name] = describe(var)
    body = func.body.body
    if isinstance(body, relax.Tuple):
        outputs = [operand(f) for f in body.fields]
    elif isinstance(body, relax.Var) and body.name in tuples:
        outputs = tuples[body.name]
    else:
        outputs = [operand(body)]
    graph = {"format": FORMAT, "version": VERSION, "name": name, "inputs": [p.name for p in func.params],
             "outputs": outputs, "tensors": tensors, "ops": ops}
    return Program(graph, weights)


def write_program(program: Program, directory: Union[str, os.PathLike]) -> pathlib.Path:
    """Write ``program.json`` and ``weights.npz`` into ``directory`` (created); returns the JSON path."""
    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "weights.npz", **program.weights)  # type: ignore[arg-type]
    path = out / "program.json"
    path.write_text(json.dumps(program.graph, indent=1, sort_keys=True))
    return path


def load_program(path: Union[str, os.PathLike]) -> Program:
    """Read an artifact back (``program.json`` or its directory); every problem is a :class:`ProgramError`.

    The graph is checked (:func:`check_graph`) and every constant is read from ``weights.npz``
    with the dtype and shape the graph gives it.
    """
    file = pathlib.Path(path)
    if file.is_dir():
        file = file / "program.json"
    if not file.is_file():
        raise ProgramError(f"{file}: no such program file")
    try:
        graph = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ProgramError(f"{file}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                           "the file is truncated or corrupt — write it again") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ProgramError(f"{file}: not readable as UTF-8 JSON ({type(err).__name__}: {err}); the file is "
                           "truncated or corrupt — write it again") from None
    if not isinstance(graph, dict) or graph.get("format") != FORMAT:
        raise ProgramError(f"{file}: not a tvm-sima program (format {graph.get('format')!r})"
                           if isinstance(graph, dict) else f"{file}: not a tvm-sima program")
    if graph.get("version") != VERSION:
        raise ProgramError(f"{file}: program version {graph.get('version')!r}; this tvm-sima reads version "
                           f"{VERSION}")
    check_graph(graph, str(file))
    constants = [name for name, t in graph["tensors"].items() if t["constant"]]
    return Program(graph, _load_weights(file.parent / "weights.npz", graph, constants, file))


def _load_weights(weights_file: pathlib.Path, graph: dict, constants: list[str], file: pathlib.Path) -> dict:
    if not constants:
        return {}
    if not weights_file.is_file():
        raise ProgramError(f"{file}: the weights file {weights_file} is missing ({len(constants)} constants)")
    try:
        with np.load(weights_file) as npz:
            absent = [c for c in constants if c not in npz.files]
            if absent:
                raise ProgramError(f"{weights_file}: weights {absent[:5]} are missing")
            weights = {c: npz[c] for c in constants}
    except ProgramError:
        raise
    except Exception as err:  # noqa: BLE001 - zipfile, zlib and numpy fail in many ways on a damaged file
        message = " ".join(str(err).split())[:300]
        raise ProgramError(f"{weights_file}: not a readable .npz ({type(err).__name__}: {message}); the file is "
                           "truncated or corrupt — write it again") from None
    for c in constants:
        t = graph["tensors"][c]
        if list(weights[c].shape) != t["shape"] or str(weights[c].dtype) != t["dtype"]:
            raise ProgramError(f"{weights_file}: '{c}' is {weights[c].dtype}{list(weights[c].shape)}, the "
                               f"program says {t['dtype']}{t['shape']}")
    return weights


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_tensor(t: Any) -> str:
    """What is wrong with the tensor entry ``t``, or ``""``."""
    if not isinstance(t, dict) or not {"shape", "dtype", "constant"} <= set(t):
        return "needs a dict with 'shape', 'dtype' and 'constant'"
    if not isinstance(t["shape"], list) or not all(_is_int(d) and d >= 0 for d in t["shape"]):
        return f"shape {t['shape']!r} is not a list of non-negative ints"
    if not isinstance(t["dtype"], str) or not isinstance(t["constant"], bool):
        return "dtype must be a string and constant a bool"
    try:
        np.dtype(t["dtype"])
    except (TypeError, ValueError):
        return f"dtype {t['dtype']!r} is not a NumPy dtype"
    q = t.get("quantization")
    if q is not None and not (isinstance(q, dict) and isinstance(q.get("scale"), list)
                              and isinstance(q.get("zero_point"), list)):
        return "quantization must be null or a dict with 'scale' and 'zero_point' lists"
    return ""


def _check_operand(value: Any, known: set, where: str) -> None:
    if isinstance(value, str):
        if value not in known:
            raise ProgramError(f"{where}: operand '{value}' is not an input, a constant or an earlier op's output")
    elif isinstance(value, list):
        for v in value:
            _check_operand(v, known, where)
    elif not (isinstance(value, dict) and set(value) == {"literal"}):
        raise ProgramError(f"{where}: operand {value!r} is neither a tensor name, a list nor {{'literal': ...}}")


def check_graph(graph: dict, where: str = "program") -> None:
    """Check the structure of a program graph: every key, type and tensor reference.

    Raises
    ------
    ProgramError
        Naming the key, tensor or op (by index and name) that is missing or of the wrong type, and
        any operand or output naming no tensor defined before it.
    """
    missing_keys = [k for k in ("inputs", "outputs", "tensors", "ops") if k not in graph]
    if missing_keys:
        raise ProgramError(f"{where}: missing {missing_keys}")
    tensors, ops = graph["tensors"], graph["ops"]
    if not isinstance(tensors, dict) or not isinstance(ops, list):
        raise ProgramError(f"{where}: 'tensors' must be a dict and 'ops' a list")
    for name, t in tensors.items():
        problem = _check_tensor(t)
        if problem:
            raise ProgramError(f"{where}: tensor '{name}': {problem}")
    for key in ("inputs", "outputs"):
        names = graph[key]
        if not isinstance(names, list) or not all(isinstance(n, str) and n in tensors for n in names):
            raise ProgramError(f"{where}: '{key}' must be a list of names in 'tensors', got {names!r}"[:300])
    known = set(graph["inputs"]) | {n for n, t in tensors.items() if t["constant"]}
    for k, op in enumerate(ops):
        at = f"{where}: op {k}"
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or not isinstance(op.get("attrs"), dict) \
                or not isinstance(op.get("inputs"), list) or not isinstance(op.get("outputs"), list):
            raise ProgramError(f"{at}: needs 'op' (a string), 'inputs' and 'outputs' (lists) and 'attrs' (a dict)")
        at = f"{at} '{op.get('name')}' ({op['op']})"
        _check_operand(op["inputs"], known, at)
        if len(op["outputs"]) != 1 or not isinstance(op["outputs"][0], str) or op["outputs"][0] not in tensors:
            raise ProgramError(f"{at}: 'outputs' must be one tensor name in 'tensors', got {op['outputs']!r}"[:300])
        known.add(op["outputs"][0])
    absent = [n for n in graph["outputs"] if n not in known]
    if absent:
        raise ProgramError(f"{where}: outputs {absent[:5]} are computed by no op")


# --------------------------------------------------------------------------------- NumPy interpreter

def _requant(acc: np.ndarray, a: dict, axis: int, zp_out: int) -> np.ndarray:
    """``sima.requantize``'s arithmetic on int64 ``acc``; per-channel multiplier / shift along ``axis``."""
    from .. import math as sm

    mult, shift = a["multiplier"], a["shift"]
    per_channel = len(mult) > 1 or len(shift) > 1
    m, n = (np.broadcast_to(np.asarray(v), (acc.shape[axis],)) if per_channel else v[0] for v in (mult, shift))
    y = sm.requantize(acc, m, n, a["rounding"], zp_out, a["qmin"], a["qmax"], axis=axis if per_channel else None)
    return y.astype(a["out_dtype"])


def _fused(acc: np.ndarray, bias: np.ndarray, a: dict, channel_axis: int) -> np.ndarray:
    total = acc + bias.astype(np.int64).reshape([-1 if i == channel_axis else 1 for i in range(acc.ndim)])
    return _requant(total, a, channel_axis, a["output_zero_point"])


def _conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, a: dict) -> np.ndarray:
    from .. import math as sm

    nchw = a["data_layout"] == "NCHW"
    groups = a["groups"]
    hwigo = sm.oihw_to_hwigo(w, groups) if nchw else w.reshape(*w.shape[:3], groups, -1)
    acc = sm.conv2d_accumulate(x, hwigo, strides=a["strides"], padding=tuple(a["padding"]), dilation=a["dilation"],
                               pad_value=a["input_zero_point"], layout=a["data_layout"])
    return _fused(acc, b, a, 1 if nchw else 3)


def _dense(x: np.ndarray, w: np.ndarray, b: np.ndarray, a: dict) -> np.ndarray:
    from .. import math as sm

    return _fused(sm.dense_accumulate(x, w), b, a, 1)


def _lit(value: Any) -> Any:
    """A ``{"literal": v}`` operand (or a list of them) as a plain value."""
    if isinstance(value, dict):
        return value["literal"]
    if isinstance(value, list):
        return [_lit(v) for v in value]
    return value


def _qparams(a: dict) -> Any:
    from ..ops.quant import qparams_from_attrs

    return qparams_from_attrs(a)


def _requantize(x: np.ndarray, a: dict) -> np.ndarray:
    from ..math.requant import normalize_axis

    return _requant(x.astype(np.int64) - a["zp_in"], a, normalize_axis(a["axis"], x.ndim), a["zp_out"])


def _pool_pad(x: np.ndarray, a: dict, value: Any) -> np.ndarray:
    top, left, bottom, right = a["padding"]
    spatial = [(top, bottom), (left, right)]
    pads = [(0, 0)] + (spatial + [(0, 0)] if a["layout"] == "NHWC" else [(0, 0)] + spatial)
    return np.pad(x, pads, constant_values=value)


def _max_pool2d(x: np.ndarray, a: dict) -> np.ndarray:
    from numpy.lib.stride_tricks import sliding_window_view

    if a["ceil_mode"] or a["dilation"] != [1, 1]:
        raise ProgramError("max_pool2d with ceil_mode or dilation has no NumPy implementation")
    nhwc = a["layout"] == "NHWC"
    padded = _pool_pad(x, a, np.iinfo(x.dtype).min if x.dtype.kind in "iu" else -np.inf)
    axes = (1, 2) if nhwc else (2, 3)
    windows = sliding_window_view(padded, a["pool_size"], axis=axes)
    sh, sw = a["strides"]
    windows = windows[:, ::sh, ::sw] if nhwc else windows[:, :, ::sh, ::sw]
    return windows.max(axis=(-2, -1)).astype(x.dtype)


def _int_conv2d(x: np.ndarray, w: np.ndarray, a: dict) -> np.ndarray:
    from .. import math as sm

    nchw = a["data_layout"] == "NCHW"
    if (a["kernel_layout"], a["data_layout"]) not in (("HWIO", "NHWC"), ("OIHW", "NCHW")):
        raise ProgramError(f"conv2d with {a['data_layout']} / {a['kernel_layout']} has no NumPy implementation")
    groups = a["groups"]
    hwigo = sm.oihw_to_hwigo(w, groups) if nchw else w.reshape(*w.shape[:3], groups, -1)
    acc = sm.conv2d_accumulate(x, hwigo, strides=a["strides"], padding=tuple(a["padding"]), dilation=a["dilation"],
                               layout=a["data_layout"])
    return acc.astype(a["out_dtype"] or x.dtype)


def _strided_slice(x: np.ndarray, *operands: Any) -> np.ndarray:
    axes, begin, end = (_lit(v) for v in operands[:3])
    strides = _lit(operands[3]) if len(operands) > 4 else [1] * len(axes)  # the last operand is the attrs
    index = [slice(None)] * x.ndim
    for axis, b, e, st in zip(axes, begin, end, strides, strict=True):
        index[axis] = slice(b, e, st)
    return x[tuple(index)]


def _pad(x: np.ndarray, a: dict) -> np.ndarray:
    if a["pad_mode"] != "constant":
        raise ProgramError(f"pad with pad_mode {a['pad_mode']} has no NumPy implementation")
    widths = [int(w) for w in a["pad_width"]]
    return np.pad(x, list(zip(widths[::2], widths[1::2], strict=True)), constant_values=a["pad_value"])


def _sum(x: np.ndarray, a: dict) -> np.ndarray:
    out = x.sum(axis=tuple(a["axis"]) if a["axis"] is not None else None, keepdims=a["keepdims"], dtype=x.dtype)
    return np.asarray(out, dtype=x.dtype)


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    return lambda a, b, _attrs: fn(a, b).astype(np.result_type(a, b))


#: op name -> NumPy implementation ``fn(*inputs, attrs)``; extend it for more ops.
NUMPY_OPS: dict[str, Callable[..., np.ndarray]] = {
    "sima.conv2d": _conv2d,
    "sima.dense": _dense,
    "sima.requantize": _requantize,
    "sima.quantize": lambda x, a: __import__("tvm_sima.math", fromlist=["quantize"]).quantize(
        x, _qparams(a), a["rounding"], precision=a.get("precision", "float64")).astype(a["out_dtype"]),
    "sima.dequantize": lambda x, a: __import__("tvm_sima.math", fromlist=["dequantize"]).dequantize(
        x, _qparams(a)).astype(a["out_dtype"]),
    "relax.reshape": lambda x, shape, a: x.reshape([int(d) for d in _lit(shape)]),
    "relax.astype": lambda x, a: x.astype(a["dtype"]),
    "relax.add": _binary(np.add),
    "relax.subtract": _binary(np.subtract),
    "relax.multiply": _binary(np.multiply),
    "relax.floor_divide": _binary(np.floor_divide),
    "relax.abs": lambda x, a: np.abs(x),
    "relax.negative": lambda x, a: np.negative(x),
    "relax.sign": lambda x, a: np.sign(x).astype(x.dtype),
    "relax.clip": lambda x, lo, hi, a: np.clip(x, _lit(lo), _lit(hi)).astype(x.dtype),
    "relax.concat": lambda xs, a: np.concatenate(xs, axis=a["axis"]),
    "relax.sum": _sum,
    "relax.nn.max_pool2d": _max_pool2d,
    "relax.nn.conv2d": _int_conv2d,
    "relax.nn.pad": _pad,
    "relax.strided_slice": _strided_slice,
    "relax.squeeze": lambda x, a: np.squeeze(x, axis=tuple(a["axis"]) if a["axis"] is not None else None),
    "relax.permute_dims": lambda x, a: np.transpose(x, a["axes"]),
    "relax.expand_dims": lambda x, a: np.expand_dims(x, tuple(a["axis"])),
    "relax.flatten": lambda x, a: x.reshape(-1),
    "relax.take": lambda table, index, a: np.take(table, np.clip(index, 0, table.shape[a["axis"] or 0] - 1),
                                                  axis=a["axis"]),
}


def run_program(program: Program, *inputs: np.ndarray) -> list[np.ndarray]:
    """Execute ``program`` with NumPy; returns its outputs."""
    graph = program.graph
    check_graph(graph)
    if len(inputs) != len(graph["inputs"]):
        raise ProgramError(f"the program takes {len(graph['inputs'])} inputs, got {len(inputs)}")
    values: dict[str, Any] = dict(program.weights)
    for name, x in zip(graph["inputs"], inputs, strict=True):
        t = graph["tensors"][name]
        if list(x.shape) != t["shape"] or str(x.dtype) != t["dtype"]:
            raise ProgramError(f"input '{name}' must be {t['dtype']}{t['shape']}, got {x.dtype}{list(x.shape)}")
        values[name] = x
    unknown = sorted({op["op"] for op in graph["ops"]} - set(NUMPY_OPS))
    if unknown:
        raise ProgramError(f"no NumPy implementation for {unknown}; known: {sorted(NUMPY_OPS)}")
    for k, op in enumerate(graph["ops"]):
        args = [values[i] if isinstance(i, str) else [values[j] if isinstance(j, str) else j for j in i]
                if isinstance(i, list) and all(isinstance(j, str) for j in i) else i for i in op["inputs"]]
        values[op["outputs"][0]] = _run_op(k, op, args, graph["tensors"][op["outputs"][0]])
    return [values[o] for o in graph["outputs"]]


def _run_op(k: int, op: dict, args: list, out: dict) -> np.ndarray:
    """One op of a checked graph; any failure, or a result unlike the tensor the graph declares, is a ProgramError."""
    at = f"op {k} '{op.get('name')}' ({op['op']})"
    try:
        y = np.asarray(NUMPY_OPS[op["op"]](*args, op["attrs"]))
    except ProgramError as err:
        raise ProgramError(f"{at}: {err}") from None
    except Exception as err:  # noqa: BLE001 - a damaged attribute fails in NumPy in many ways; name the op
        message = " ".join(str(err).split())[:300]
        raise ProgramError(f"{at}: {type(err).__name__}: {message} (the program's attributes or operands do not "
                           "fit this op)") from None
    if list(y.shape) != out["shape"] or str(y.dtype) != out["dtype"]:
        raise ProgramError(f"{at}: computed {y.dtype}{list(y.shape)}, the program declares {out['dtype']}"
                           f"{out['shape']}")
    return y
