"""Model inputs' shapes: what a file declares, what the caller gives, and the errors that say which to give.

Shared by every frontend (:mod:`tvm_sima.frontends.loader` for ONNX / TFLite files,
:mod:`tvm_sima.frontends.torch_export` for PyTorch models): a dynamic dimension is taken from the
given shapes, or from another input given the same symbol; a dynamic batch (first) dimension
otherwise becomes 1, logged once at INFO; any other is a :class:`DynamicShapeError`.
"""

from __future__ import annotations

import logging
import math
import pathlib
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from .errors import MAX_ELEMENTS

__all__ = ["Shapes", "Dim", "Declared", "Spell", "UnsupportedOpsError", "InputShapeError", "DynamicShapeError",
           "python_argument", "input_shapes", "checked_shape", "log_batch", "spelled"]

logger = logging.getLogger("tvm_sima.frontends.loader")  # the loader's name: its INFO lines keep their logger

Shapes = Optional[Mapping[str, Sequence[int]]]
Dim = Union[int, str, None]
"""A declared input dimension: a fixed size, a symbol (ONNX ``dim_param``), or None (``?``, ``-1``)."""
Declared = dict[str, Optional[list[Dim]]]
"""Each input's declared dimensions, or None when the file gives no shape (unknown rank)."""
Spell = Callable[[str, Sequence[str]], str]
"""How an error names the argument that sets a shape: ``spell(input name, dims) -> text``."""


class UnsupportedOpsError(ValueError):
    """The model uses ops the importer cannot convert; ``ops`` lists ``(op, where)`` pairs."""

    def __init__(self, path: str, ops: list[tuple[str, str]]) -> None:
        self.ops = ops
        listed = "; ".join(f"{op} ({where})" for op, where in ops[:20])
        more = f"; and {len(ops) - 20} more" if len(ops) > 20 else ""
        super().__init__(f"{path}: {len(ops)} unsupported op(s): {listed}{more}")


def python_argument(name: str, dims: Sequence[str]) -> str:
    """Spell a shape as :func:`load_model`'s argument: ``input_shapes={'x': (1, 3, H, W)}``."""
    return f"input_shapes={{{name!r}: ({', '.join(dims)}{',' if len(dims) == 1 else ''})}}"


def spelled(dims: Optional[Sequence[Dim]]) -> str:
    return "unknown" if dims is None else "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


class InputShapeError(ValueError):
    """A shape given for an input does not fit the shape its model file declares.

    ``path``, ``name``, ``declared`` (a list of :data:`Dim`, or None for an unknown rank), ``given``
    (the shape given) and ``problem`` (what is wrong with it) are attributes, so a caller can word
    the error for its own interface: ``err.message(spell)`` names the argument with
    ``spell(name, dims)``; ``str(err)`` is ``err.message(python_argument)``.
    """

    def __init__(self, path: str, name: str, declared: Optional[list[Dim]], given: Sequence[Any],
                 problem: str) -> None:
        self.path, self.name, self.declared = path, name, declared
        self.given, self.problem = tuple(given), problem
        super().__init__(self.message(python_argument))

    def message(self, spell: Spell) -> str:
        """The one-line error, naming the shape argument as ``spell`` writes it."""
        return f"{self.path}: {spell(self.name, [str(d) for d in self.given])} {self.problem}"


class DynamicShapeError(InputShapeError):
    """An input has a dynamic dimension (not the batch) that no given shape or symbol fixes.

    ``given`` is the shape to give, with the known sizes filled in and a placeholder (the
    symbol, or ``D<k>`` for the k-th dimension) where a size is needed.
    """

    def __init__(self, path: str, name: str, declared: Optional[list[Dim]], suggestion: Sequence[str]) -> None:
        super().__init__(path, name, declared, suggestion, "")

    def message(self, spell: Spell) -> str:
        """The one-line error, suggesting the shape to give as ``spell`` writes it."""
        if self.declared is None:
            what = "no declared shape (unknown rank)"
        else:
            dynamic = ", ".join(s for s in self.given if not s.isdigit())
            what = f"dynamic dimension(s) {dynamic} in its declared shape {spelled(self.declared)}"
        return (f"{self.path}: input {self.name!r} has {what} that the model file does not fix; "
                f"give its shape with {spell(self.name, list(self.given))}")


def input_shapes(path: pathlib.Path, declared: Declared, given: Shapes) -> dict[str, tuple[int, ...]]:
    """Every input's static shape: given, else declared, with its dynamic dimensions resolved.

    A symbol takes the size a given shape has for it; a dynamic first (batch) dimension left
    over becomes 1 (logged); any other dynamic dimension is a :class:`DynamicShapeError`.
    """
    fixed = {name: checked_shape(str(path), name, declared, shape) for name, shape in (given or {}).items()}
    bound = {d: size for name, shape in fixed.items() for d, size in zip(declared[name] or [], shape, strict=False)
             if isinstance(d, str)}
    return {name: fixed[name] if name in fixed else _resolved(str(path), name, dims, bound)
            for name, dims in declared.items()}


def checked_shape(path: str, name: str, declared: Declared, shape: Sequence[Any]) -> tuple[int, ...]:
    """``shape`` as ints, when it fits input ``name``'s declared shape; else an InputShapeError."""
    try:
        ints = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: input_shapes[{name!r}]={shape!r}: a shape is a sequence of ints") from None
    if name not in declared:
        raise InputShapeError(path, name, None, ints, f"names no input of the model; its inputs: {sorted(declared)}")
    dims = declared[name]
    if any(d < 1 for d in ints):
        raise InputShapeError(path, name, dims, ints, "has a size < 1; give every dimension as a positive size, "
                                                      "the dynamic ones too")
    if math.prod(ints) > MAX_ELEMENTS:
        raise InputShapeError(path, name, dims, ints, f"has {math.prod(ints)} elements, more than the "
                                                      f"{MAX_ELEMENTS} a tensor may hold")
    if dims is None:
        return ints
    if len(ints) != len(dims):
        raise InputShapeError(path, name, dims, ints, f"has rank {len(ints)}; input {name!r} has rank "
                                                      f"{len(dims)}, declared {spelled(dims)}")
    conflicts = [f"dimension {k} is {d}" for k, (d, g) in enumerate(zip(dims, ints, strict=True))
                 if isinstance(d, int) and d != g]
    if conflicts:
        raise InputShapeError(path, name, dims, ints, f"does not fit input {name!r}, declared {spelled(dims)} "
                                                      f"({', '.join(conflicts)} in the file)")
    return ints


def _resolved(path: str, name: str, dims: Optional[list[Dim]], bound: dict[str, int]) -> tuple[int, ...]:
    """The declared shape with symbols from ``bound`` and a dynamic batch of 1 (binds its symbol)."""
    if dims is None:
        raise DynamicShapeError(path, name, None, ["D1", "D2", "..."])
    sizes = [d if isinstance(d, int) else bound.get(d) if isinstance(d, str) else None for d in dims]
    batch = bool(dims) and sizes[0] is None
    if batch:
        sizes[0] = 1
    shape = tuple(s for s in sizes if s is not None)
    if len(shape) < len(dims):
        suggestion = [_placeholder(k, d, s) for k, (d, s) in enumerate(zip(dims, sizes, strict=True))]
        raise DynamicShapeError(path, name, dims, suggestion)
    if batch:
        log_batch(path, name, dims[0])
        if isinstance(dims[0], str):
            bound[dims[0]] = 1
    return shape


def log_batch(path: str, name: str, dim: Dim) -> None:
    logger.info("%s: input %r: dynamic batch dimension %r set to 1", path, name, dim or "?")


def _placeholder(k: int, dim: Dim, size: Optional[int]) -> str:
    """How a suggested shape writes dimension ``k``: its size, else its symbol, else ``D<k+1>``."""
    return str(size) if size is not None else str(dim) if dim is not None else f"D{k + 1}"


