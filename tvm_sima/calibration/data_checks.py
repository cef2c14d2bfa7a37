"""Checks of the data fed to a model's inputs: structure, shape, dtype and finiteness, per sample.

A dataset (``tvm_sima.plugins.load_dataset``) is checked whole when it is loaded, before any
calibration or evaluation runs, so a bad file fails in a second with an error that names the
source, the input and the sample (``sample 7`` is the 8th sample along the batch axis, counted
over all batches), instead of failing late inside TVM or printing ``nan`` dB.

* every batch is an array (a one-input model) or a ``{input name: array}`` dict with every input;
* each array has the input's rank and its static dimensions (``-1`` in the spec: any size);
* dtypes: a float input takes float or integer data (cast to its dtype); an integer input takes
  integers that fit its range; anything else (strings, objects, complex) is refused;
* float data must be finite: NaN or Inf in a model input is an error, unless ``allow_nonfinite``
  (calibration with ``trim_infinity_before_statistic``: the observers drop and count them), and
  even then an input with no finite value at all is refused.

While a program runs (calibration, :func:`tvm_sima.compare.compare_tensors`), each batch is turned
into the input arrays in parameter order (:func:`batch_arrays`) and checked against the compiled
function's parameters (:func:`check_batch`), with the batch number in the error; what it returns
becomes a flat list of arrays with :func:`result_arrays`.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

__all__ = ["DataError", "check_batches", "check_dtype", "batch_arrays", "check_batch", "result_arrays"]

#: One batch: an array (a one-input model) or ``{input name: array}``.
Batch = Union[np.ndarray, dict]


class DataError(ValueError):
    """Data that does not fit the model: the message names the source, the input and the sample."""


def _shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join("?" if d < 0 else str(d) for d in shape) + ")"


def check_dtype(array: np.ndarray, name: str, dtype: str, source: str) -> None:
    """Refuse an array whose dtype cannot stand for input ``name`` of ``dtype`` (module docstring)."""
    want, got = np.dtype(dtype), array.dtype
    if want.kind == "f" and got.kind in "fiu":
        return
    if want.kind in "iu" and got.kind in "iu":
        info = np.iinfo(want)
        if array.size and (int(array.min()) < info.min or int(array.max()) > info.max):
            raise DataError(f"{source}: input {name!r}: values {int(array.min())}..{int(array.max())} do not fit "
                            f"{want} ({info.min}..{info.max})")
        return
    if got == want:
        return
    hint = " (round and cast it first: np.round(x).astype(...))" if want.kind in "iu" and got.kind == "f" else ""
    raise DataError(f"{source}: input {name!r}: array of dtype {got}; the model takes {want}{hint}")


def _arrays(batch: Any, names: list[str], source: str, number: int) -> dict[str, np.ndarray]:
    if isinstance(batch, dict):
        missing = [n for n in names if n not in batch]
        if missing:
            raise DataError(f"{source}: batch {number} lacks input(s) {missing}; it has {sorted(map(str, batch))}")
        values = {n: batch[n] for n in names}
    elif len(names) == 1:
        values = {names[0]: batch}
    else:
        raise DataError(f"{source}: batch {number} is one {type(batch).__name__}; the model has inputs {names}: "
                        "give each batch as a dict {name: array}")
    out = {}
    for name, value in values.items():
        try:
            out[name] = np.asarray(value)
        except (TypeError, ValueError) as err:  # ragged lists and the like
            raise DataError(f"{source}: batch {number}, input {name!r}: not an array ({err})") from None
        if out[name].dtype.kind in "OSUVMm":
            raise DataError(f"{source}: batch {number}, input {name!r}: array of dtype {out[name].dtype}, "
                            "not numbers")
    return out


def _check_shape(array: np.ndarray, name: str, shape: Sequence[int], source: str, number: int) -> None:
    fits = array.ndim == len(shape) and all(w < 0 or w == g for w, g in zip(shape, array.shape, strict=False))
    if not fits:
        raise DataError(f"{source}: batch {number}, input {name!r}: shape {tuple(array.shape)}; the model takes "
                        f"{_shape_text(shape)}")


def _first_nonfinite(array: np.ndarray, name: str, source: str, first_sample: int, number: int) -> None:
    array = array.reshape(1) if array.ndim == 0 else array  # a scalar input: one sample
    bad = ~np.isfinite(array)
    if not bad.any():
        return
    rows = bad.reshape(len(array), -1).any(axis=1)
    row = int(np.argmax(rows))
    nan, inf = int(np.isnan(array[row]).sum()), int(np.isinf(array[row]).sum())
    kinds = " and ".join(f"{n} {k}" for n, k in ((nan, "NaN"), (inf, "Inf")) if n)
    where = f"sample {first_sample + row}" + (f" (batch {number})" if len(array) > 1 else "")
    raise DataError(f"{source}: {where}, input {name!r}: {kinds} value(s); model inputs must be finite (fix or "
                    "drop the sample)")


def check_batches(batches: Sequence[Any], inputs: Sequence[Any], source: str,
                  allow_nonfinite: bool = False) -> list:
    """``batches`` checked against ``inputs`` (``InputSpec``-like: ``name``, ``shape``, ``dtype``).

    Returns the batches with every array cast to its input's dtype (an array, or a dict for a
    model with several inputs, as given). Raises :class:`DataError` on the first problem.
    """
    names = [i.name for i in inputs]
    finite = dict.fromkeys(names, False)
    checked: list = []
    sample = 0
    for number, batch in enumerate(batches):
        arrays = _arrays(batch, names, source, number)
        for spec in inputs:
            array = arrays[spec.name]
            _check_shape(array, spec.name, spec.shape, source, number)
            check_dtype(array, spec.name, spec.dtype, source)
            array = arrays[spec.name] = array.astype(spec.dtype, copy=False)
            if array.dtype.kind != "f":
                finite[spec.name] = True
                continue
            if not allow_nonfinite:
                _first_nonfinite(array, spec.name, source, sample, number)
            finite[spec.name] = finite[spec.name] or bool(np.isfinite(array).any())
        sample += len(arrays[names[0]]) if arrays[names[0]].ndim else 1
        checked.append(arrays if isinstance(batch, dict) else arrays[names[0]])
    empty = [name for name, seen in finite.items() if not seen]
    if checked and empty:
        raise DataError(f"{source}: input(s) {empty} have no finite value in any of {sample} sample(s)")
    return checked


def batch_arrays(batch: Batch, names: list[str]) -> list[np.ndarray]:
    """The arrays of one batch in the order of the input ``names`` (contiguous).

    Parameters
    ----------
    batch : ndarray or dict
        An array (only for a one-input model) or ``{input name: array}`` with every name.
    names : list of str
        The model's input names, in parameter order.

    Raises
    ------
    ValueError
        A dict that lacks an input, or an array for a model with several inputs.
    """
    if isinstance(batch, dict):
        missing = sorted(set(names) - set(batch))
        if missing:
            raise ValueError(f"calibration batch lacks inputs {missing}; it has {sorted(batch)}")
        return [np.ascontiguousarray(batch[n]) for n in names]
    if len(names) != 1:
        raise ValueError(f"the model has inputs {names}: give each batch as a dict {{name: array}}")
    return [np.ascontiguousarray(batch)]


def check_batch(arrays: list[np.ndarray], params: Any, number: int) -> None:
    """Each array against its input's declared shape and dtype, with the batch number in the error.

    Parameters
    ----------
    arrays : list of ndarray
        :func:`batch_arrays` of the batch.
    params : sequence of relax.Var
        The function's parameters (``name``, ``ty.shape``, ``ty.dtype``), in the same order.
    number : int
        The batch's number (from 1), named in the error.

    Raises
    ------
    ValueError
        An array whose dtype or (static) shape is not its parameter's.
    """
    for array, param in zip(arrays, params, strict=False):
        ty = param.ty
        shape = tuple(int(d) for d in ty.shape) if ty.shape is not None else None
        if str(array.dtype) != str(ty.dtype) or (shape is not None and array.shape != shape):
            raise ValueError(f"calibration batch {number}: input {param.name!r} is {array.dtype} of shape "
                             f"{array.shape}; the model takes {ty.dtype} of shape {shape}")


def result_arrays(value: Any) -> list[np.ndarray]:
    """A VM call's result as NumPy arrays in output order: a tensor, or a (nested) tuple of them, flattened."""
    if hasattr(value, "numpy"):
        return [value.numpy()]
    return [array for item in value for array in result_arrays(item)]
