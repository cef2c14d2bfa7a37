"""How the command line loads a model: ``--input-shape`` values, shapes from the data, one-line errors.

:func:`load_model` turns the loader's :class:`~tvm_sima.frontends.loader.InputShapeError` into a
:class:`~tvm_sima.cli_errors.CliError` that names the flag (``--input-shape x=1,3,48,192``), not the
Python argument; a dynamic dimension other than the batch is taken from the first batch of the
data (:func:`data_shapes`) when the command has data.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable, Optional, Sequence

from tvm_sima.cli_errors import CliError

__all__ = ["input_shapes", "shape_flag", "load_model", "read_dataset", "data_shapes"]


def input_shapes(values: Optional[list[str]]) -> Optional[dict[str, tuple[int, ...]]]:
    """``--input-shape NAME=D1,D2,...`` values as ``{name: shape}`` (the loader checks the sizes)."""
    if not values:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for item in values:
        name, sep, dims = item.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise CliError(f"--input-shape {item!r}: write NAME=D1,D2,... (e.g. image=1,3,224,224)") from None
        if name in shapes:
            first = shape_flag(name, [str(d) for d in shapes[name]])
            raise CliError(f"--input-shape {name}: given twice ({first}, {item})")
        shapes[name] = shape
    return shapes


def shape_flag(name: str, dims: Sequence[str]) -> str:
    """A shape as the option that gives it: ``--input-shape x=1,3,48,192`` (the loader's errors use it)."""
    return f"--input-shape {name}={','.join(dims)}"


def load_model(path: str, shapes: Optional[list[str]],
               from_data: Optional[Callable[[], dict[str, tuple[int, ...]]]] = None) -> tuple[Any, dict]:
    """Load the model with the ``--input-shape`` values; errors become one CliError line naming the flag.

    ``from_data``, when given, is called only if a dynamic dimension other than the batch is left
    (e.g. ``lambda: data_shapes(model, calib, options)``): the data's shapes then fill the dynamic
    dimensions.
    """
    import tvm_sima
    from tvm_sima.frontends.loader import DynamicShapeError, InputShapeError, shapes_from_data

    if not pathlib.Path(path).is_file():
        raise CliError(f"model file {path} not found")
    given = input_shapes(shapes)
    try:
        try:
            return tvm_sima.load_model(path, given)
        except DynamicShapeError:
            if from_data is None:
                raise
        return tvm_sima.load_model(path, shapes_from_data(path, from_data(), given))
    except InputShapeError as err:
        raise CliError(err.message(shape_flag)) from None
    except (ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from None


def read_dataset(spec: str, inputs: Sequence[Any], options: dict, allow_nonfinite: bool = False) -> Any:
    """``tvm_sima.plugins.load_dataset`` for ``inputs``; what it refuses becomes one CliError line."""
    from tvm_sima.plugins import PluginError, load_dataset

    try:
        return load_dataset(spec, inputs, options, allow_nonfinite=allow_nonfinite)
    except (PluginError, OSError) as err:
        raise CliError(str(err)) from None


def data_shapes(path: str, spec: str, options: dict) -> dict[str, tuple[int, ...]]:
    """Each input's shape in the first batch of ``spec``, read with the file's declared shapes (-1 where dynamic)."""
    from tvm_sima.frontends.loader import declared_inputs
    from tvm_sima.plugins import InputSpec

    inputs = [InputSpec(name, tuple(d if isinstance(d, int) else -1 for d in dims or ()))
              for name, dims in declared_inputs(path).items()]
    first = read_dataset(spec, inputs, options).batches[0]
    arrays = first if isinstance(first, dict) else {inputs[0].name: first}
    return {name: tuple(int(d) for d in array.shape) for name, array in arrays.items()}
