"""Datasets and metrics as plugins, found through Python entry points.

A **dataset plugin** turns a source string into batches for a model: a callable
``plugin(source: str, inputs: list[InputSpec], options: dict) -> Dataset``. A **metric plugin**
is a callable with no argument (a class, usually) returning an object with ``update(reference,
test, labels)`` and ``result() -> float``; it scores the float model's output (``reference``)
against the quantized model's (``test``), batch by batch.

Plugins are discovered from the entry point groups ``tvm_sima.datasets`` and ``tvm_sima.metrics``
of every installed distribution (this package registers its built-ins there too), so a package
of your own adds one with, in its ``pyproject.toml``::

    [project.entry-points."tvm_sima.metrics"]
    top3 = "my_metrics:TopThree"

and ``tvm-sima report ... --metric top3`` finds it. In one process, :func:`register_dataset` and
:func:`register_metric` do the same.

Built-in datasets (``load_dataset(spec, inputs, options)`` picks one by the spec: ``NAME:SOURCE``
names a plugin; otherwise ``.npy`` / ``.npz`` files, directories (images) and ``file.py:function``
or ``package.module:function`` (python) are recognised):

* ``npy``: one array for a one-input model, split along axis 0 into batches of the model's batch size;
* ``npz``: one array per input name (or a single array for a one-input model), plus optional
  ``labels``;
* ``images``: a folder of images (png, jpg, bmp, ...; class sub-folders give labels, in sorted
  order), options ``resize`` (short side, or ``HxW``; default: the model's ``HxW``), ``crop``
  (``HxW``, centred), ``scale`` (default ``1/255``), ``mean`` / ``std`` (one value, or one per
  channel, applied after ``scale``); layout and channel count come from the model's input;
* ``python``: ``path/to/file.py:function`` or ``package.module:function``, called with the options
  as keyword arguments; returns an iterable of batches, or ``(batches, labels)`` with labels per
  batch or one array with a label per sample.

Built-in metrics: ``top1``, ``top5`` (accuracy against the labels when the dataset has them,
otherwise agreement: the float model's top-1 class within the quantized model's top k),
``cosine``, ``sqnr`` (dB), ``max_abs_error``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pathlib
import pickle
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from .calibration.data_checks import DataError, check_batches, check_dtype
from .messages import one_line
from .output_metrics import Cosine, MaxAbsError, Sqnr, TopK, top1, top5  # noqa: F401 (entry points name them here)

__all__ = ["DATASET_GROUP", "METRIC_GROUP", "Dataset", "InputSpec", "PluginError", "batch_size",
           "dataset_plugins", "get_metric", "image_files", "image_layout", "images_of", "load_dataset",
           "metric_plugins", "register_dataset", "register_metric"]

DATASET_GROUP = "tvm_sima.datasets"
METRIC_GROUP = "tvm_sima.metrics"

Batch = Union[np.ndarray, dict]


class PluginError(ValueError):
    """A dataset or metric that cannot be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, shape (ints; ``-1`` where dynamic) and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass
class Dataset:
    """Batches for a model (arrays, or ``{input name: array}``) and, optionally, labels per batch."""

    batches: list
    labels: Optional[list] = None
    source: str = ""

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


_DATASETS: dict[str, Callable[..., Dataset]] = {}
_METRICS: dict[str, Callable[[], Any]] = {}


def register_dataset(name: str, plugin: Optional[Callable[..., Dataset]] = None) -> Any:
    """Make ``plugin`` available as dataset ``name`` in this process (overrides an entry point).

    Without ``plugin``, a decorator: ``@register_dataset("mine")`` registers and returns the function.
    """
    return _register(_DATASETS, name, plugin)


def register_metric(name: str, factory: Optional[Callable[[], Any]] = None) -> Any:
    """Make ``factory`` (a metric class, or a function returning a metric) available as ``name``.

    Without ``factory``, a decorator: ``@register_metric("mine")`` registers and returns the class.
    """
    return _register(_METRICS, name, factory)


def _register(registry: dict[str, Callable], name: str, plugin: Optional[Callable]) -> Any:
    def add(func: Callable) -> Callable:
        registry[name] = func
        return func

    return add if plugin is None else add(plugin)


class _Plugins(Mapping[str, Callable]):
    """Plugins by name: built-ins, then installed entry points, then in-process registrations.

    An entry point is loaded only when its name is looked up, so one broken third-party plugin
    does not break the others (looking it up gives an error naming it).
    """

    def __init__(self, group: str, builtins: dict[str, Callable], registered: dict[str, Callable]) -> None:
        self.group = group
        self.entries: dict[str, Any] = dict(builtins)  # also when this package's metadata is stale
        self.entries.update({ep.name: ep for ep in importlib.metadata.entry_points(group=group)
                             if not (ep.name in builtins and ep.value.startswith("tvm_sima."))})
        self.entries.update(registered)

    def __getitem__(self, name: str) -> Callable:
        entry = self.entries[name]
        if isinstance(entry, importlib.metadata.EntryPoint):
            try:
                return entry.load()
            except Exception as err:  # report any failure of third-party code as the plugin's
                raise PluginError(f"{self.group} plugin {name!r} ({entry.value}) failed to load: "
                                  f"{type(err).__name__}: {err}") from None
        return entry

    def __contains__(self, name: object) -> bool:  # without loading (Mapping's default would)
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def dataset_plugins() -> Mapping[str, Callable[..., Dataset]]:
    """Every dataset plugin by name: built-ins, installed entry points, then :func:`register_dataset`."""
    return _Plugins(DATASET_GROUP, _BUILTIN_DATASETS, _DATASETS)


def metric_plugins() -> Mapping[str, Callable[[], Any]]:
    """Every metric plugin by name: built-ins, installed entry points, then :func:`register_metric`."""
    return _Plugins(METRIC_GROUP, _BUILTIN_METRICS, _METRICS)


def get_metric(name: str) -> Any:
    """A fresh instance of metric ``name``."""
    plugins = metric_plugins()
    if name not in plugins:
        raise PluginError(f"unknown metric {name!r}; known: {', '.join(sorted(plugins))} "
                          f"(add one with an entry point in the group {METRIC_GROUP!r})")
    metric = plugins[name]()
    if not (callable(getattr(metric, "update", None)) and callable(getattr(metric, "result", None))):
        raise PluginError(f"metric {name!r} has no update(reference, test, labels) / result() methods")
    return metric


def load_dataset(spec: str, inputs: Sequence[Union[InputSpec, tuple]], options: Optional[dict] = None, *,
                 allow_nonfinite: bool = False) -> Dataset:
    """Batches for a model with ``inputs`` from ``spec`` (see the module docstring).

    ``inputs`` are :class:`InputSpec` or plain ``(name, shape, dtype)`` tuples; ``options`` go to the plugin.
    Every batch of every plugin is checked against ``inputs`` (rank, static dimensions, dtype) and
    cast to the input dtypes; NaN / Inf in a float input is an error naming the sample unless
    ``allow_nonfinite`` (:mod:`tvm_sima.calibration.data_checks`).

    Raises
    ------
    PluginError
        No plugin reads ``spec``, the plugin failed with a message for the user, or the data does
        not fit the model's inputs (the message names the input, the sample and what is wrong).
    """
    inputs = [i if isinstance(i, InputSpec) else InputSpec(i[0], tuple(int(d) for d in i[1]), *map(str, i[2:]))
              for i in inputs]
    plugins = dataset_plugins()
    options = dict(options or {})
    name, sep, rest = spec.partition(":")
    if sep and name in plugins and len(name) > 1:  # "images:photos/" (not a Windows drive letter)
        plugin, source = plugins[name], rest
    else:
        plugin, source = plugins[_guess(spec, plugins)], spec
    try:
        dataset = plugin(source, inputs, options)
        if not isinstance(dataset, Dataset):
            raise PluginError(f"dataset plugin for {spec!r} returned {type(dataset).__name__}, not a Dataset")
        if not dataset.batches:
            raise PluginError(f"{spec}: no batch (fewer samples than one batch of the model?)")
        dataset.source = dataset.source or spec
        dataset.batches = check_batches(dataset.batches, inputs, dataset.source, allow_nonfinite)
    except DataError as err:
        raise PluginError(str(err)) from None
    return dataset


def _guess(spec: str, plugins: Mapping[str, Callable]) -> str:
    path = pathlib.Path(spec)
    if path.suffix in (".npy", ".npz"):
        return path.suffix[1:]
    if path.is_dir():
        return "images"
    module, sep, func = spec.rpartition(":")
    if sep and func.isidentifier() and (module.endswith(".py") or all(p.isidentifier() for p in module.split("."))):
        return "python"
    if not path.exists():
        raise PluginError(f"data {spec} not found (give a .npy / .npz file, an image folder, "
                          f"file.py:function, or NAME:SOURCE with NAME one of {', '.join(sorted(plugins))})")
    raise PluginError(f"{spec}: no dataset plugin reads this; use .npy / .npz, an image folder, file.py:function "
                      f"or NAME:SOURCE with NAME one of {', '.join(sorted(plugins))}")


# ---------------------------------------------------------------------------- array datasets

def batch_size(inputs: Sequence[InputSpec]) -> int:
    """The samples per batch: the first input's leading dimension (1 where it is dynamic or absent)."""
    first = inputs[0].shape[0] if inputs[0].shape else 1
    return first if first > 0 else 1


def _split(arrays: dict[str, np.ndarray], inputs: Sequence[InputSpec], source: str,
           labels: Optional[np.ndarray] = None) -> Dataset:
    """Check every array against its input's sample shape and split them into model batches."""
    batch = batch_size(inputs)
    for spec in inputs:
        a = arrays[spec.name]
        want = spec.shape[1:]
        if a.ndim != len(spec.shape) or any(w > 0 and w != g for w, g in zip(want, a.shape[1:], strict=True)):
            raise PluginError(f"{source}: array for input {spec.name!r} has shape {a.shape}; the model takes "
                              f"({', '.join(['N', *map(str, want)])})")
        check_dtype(a, spec.name, spec.dtype, source)
        arrays[spec.name] = a.astype(spec.dtype, copy=False)
    count = min(len(a) for a in arrays.values()) // batch
    if count == 0:
        raise PluginError(f"{source}: {min(len(a) for a in arrays.values())} sample(s), fewer than one batch of "
                          f"{batch}")
    if labels is not None and len(labels) < count * batch:
        raise PluginError(f"{source}: {len(labels)} labels for {count * batch} samples")
    parts = [slice(i * batch, (i + 1) * batch) for i in range(count)]
    if len(inputs) == 1:
        only = arrays[inputs[0].name]
        batches: list = [only[s] for s in parts]
    else:
        batches = [{spec.name: arrays[spec.name][s] for spec in inputs} for s in parts]
    return Dataset(batches, None if labels is None else [np.asarray(labels[s]) for s in parts], source)


def _file(source: str, suffix: str) -> pathlib.Path:
    path = pathlib.Path(source)
    if not path.is_file():
        raise PluginError(f"data file {source} not found")
    if path.suffix != suffix:
        raise PluginError(f"{source}: the {suffix[1:]} dataset reads {suffix} files")
    return path


def _read_arrays(path: pathlib.Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npy`` (as ``"array"``) or ``.npz`` file; an unreadable file is a PluginError."""
    try:
        with open(path, "rb") as handle:
            if path.suffix == ".npy":
                return {"array": np.load(handle)}
            with np.load(handle) as npz:
                return {k: npz[k] for k in npz.files}
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise PluginError(f"{path}: not a readable {path.suffix} file ({' '.join(str(err).split())}); "
                          f"the file is truncated or corrupt, or holds objects (save plain arrays)") from None


def npy_dataset(source: str, inputs: list[InputSpec], options: dict) -> Dataset:
    path = _file(source, ".npy")
    if len(inputs) != 1:
        raise PluginError(f"{source}: the model has {len(inputs)} inputs; give an .npz with one array per input "
                          f"name ({', '.join(i.name for i in inputs)})")
    return _split({inputs[0].name: _read_arrays(path)["array"]}, inputs, source)


def npz_dataset(source: str, inputs: list[InputSpec], options: dict) -> Dataset:
    arrays = _read_arrays(_file(source, ".npz"))
    labels = arrays.pop("labels", None)
    if len(inputs) == 1 and len(arrays) == 1:
        arrays = {inputs[0].name: next(iter(arrays.values()))}
    missing = [i.name for i in inputs if i.name not in arrays]
    if missing:
        raise PluginError(f"{source}: no array for input(s) {missing}; it has {sorted(arrays)} (name one array per "
                          f"input: np.savez(file, {missing[0]}=..., labels=...))")
    return _split(arrays, inputs, source, labels)


# ---------------------------------------------------------------------------- images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _hw(value: Any, option: str) -> tuple[int, int]:
    text = str(value).lower().replace(",", "x")
    try:
        parts = [int(p) for p in text.split("x")]
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2 or min(parts) <= 0:
            raise ValueError
    except ValueError:
        raise PluginError(f"images: option {option}={value!r}: write HxW (e.g. 224x224) or one size") from None
    return parts[0], parts[1]


def _channels(value: Any, option: str, channels: int) -> np.ndarray:
    try:
        items = [float(v) for v in (value if isinstance(value, (list, tuple)) else str(value).split(","))]
    except ValueError:
        raise PluginError(f"images: option {option}={value!r}: write numbers separated by commas") from None
    if len(items) not in (1, channels):
        raise PluginError(f"images: option {option} has {len(items)} values; the model has {channels} channel(s)")
    return np.asarray(items, np.float32)


def image_files(source: str) -> tuple[list[tuple[pathlib.Path, int]], bool]:
    """The images of a folder, sorted, with their class (their sub-folder's index, or -1); whether it has classes."""
    folder = pathlib.Path(source)
    if not folder.is_dir():
        raise PluginError(f"image folder {source} not found")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [(p, k) for k, c in enumerate(classes) for p in sorted((folder / c).iterdir())] if classes else \
        [(p, -1) for p in sorted(folder.iterdir())]
    files = [(p, k) for p, k in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise PluginError(f"{source}: no image ({', '.join(IMAGE_SUFFIXES)}) in the folder or its class sub-folders")
    return files, bool(classes)


def image_layout(inputs: Sequence[InputSpec], options: dict, source: str) -> tuple[bool, int, int, int]:
    """``(nchw, channels, height, width)`` of the one 4-D input images feed; bad inputs or options are errors."""
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise PluginError(f"{source}: an image folder feeds a model with one 4-D input; this one has "
                          f"{[(i.name, i.shape) for i in inputs]}")
    known = {"resize", "crop", "scale", "mean", "std"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise PluginError(f"images: unknown option(s) {unknown}; known: {sorted(known)}")
    shape = inputs[0].shape
    nchw = shape[1] in (1, 3) and shape[3] not in (1, 3)
    channels, height, width = (shape[1], shape[2], shape[3]) if nchw else (shape[3], shape[1], shape[2])
    if channels not in (1, 3):
        raise PluginError(f"{source}: images give 1 (grayscale) or 3 (RGB) channels; the model input "
                          f"{inputs[0].name!r} has shape {shape} (use a python dataset for other inputs)")
    return nchw, channels, height, width


def images_dataset(source: str, inputs: list[InputSpec], options: dict) -> Dataset:
    if not pathlib.Path(source).is_dir():
        raise PluginError(f"image folder {source} not found")
    image_layout(inputs, options, source)  # the model and options first: an empty folder says less
    files, classes = image_files(source)
    return images_of(files, classes, inputs, options, source)


def images_of(files: list[tuple[pathlib.Path, int]], classes: bool, inputs: list[InputSpec], options: dict,
              source: str) -> Dataset:
    """The batches (and labels, with ``classes``) of the images ``files`` (:func:`image_files`) for ``inputs``."""
    from PIL import Image

    nchw, channels, height, width = image_layout(inputs, options, source)
    scale = float(options.get("scale", 1 / 255))
    mean = _channels(options.get("mean", 0.0), "mean", channels)
    std = _channels(options.get("std", 1.0), "std", channels)
    crop = _hw(options["crop"], "crop") if "crop" in options else None
    images = []
    for path, _ in files:
        try:
            image = Image.open(path).convert("L" if channels == 1 else "RGB")
        except OSError as err:
            raise PluginError(f"{path}: not a readable image ({err})") from None
        if "resize" in options:
            text = str(options["resize"])
            if "x" in text.lower() or "," in text:
                h, w = _hw(text, "resize")
            else:  # the short side
                short = _hw(text, "resize")[0]
                ratio = short / min(image.size)
                w, h = max(1, round(image.size[0] * ratio)), max(1, round(image.size[1] * ratio))
            image = image.resize((w, h), Image.Resampling.BILINEAR)
        elif crop is None:
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        if crop is not None:
            ch, cw = crop
            left, top = (image.size[0] - cw) // 2, (image.size[1] - ch) // 2
            if left < 0 or top < 0:
                raise PluginError(f"{path}: {image.size[1]}x{image.size[0]} is smaller than the crop {ch}x{cw}")
            image = image.crop((left, top, left + cw, top + ch))
        array = np.asarray(image, np.float32).reshape(image.size[1], image.size[0], channels)
        if array.shape[:2] != (height, width):
            raise PluginError(f"{path}: {array.shape[0]}x{array.shape[1]} after resize/crop; the model takes "
                              f"{height}x{width} (set resize / crop)")
        array = (array * scale - mean) / std
        images.append(array.transpose(2, 0, 1) if nchw else array)
    labels = np.asarray([k for _, k in files]) if classes else None
    return _split({inputs[0].name: np.stack(images)}, inputs, source, labels)


# ---------------------------------------------------------------------------- python callables

def python_dataset(source: str, inputs: list[InputSpec], options: dict) -> Dataset:
    target, sep, func_name = source.rpartition(":")
    if not sep:
        raise PluginError(f"python dataset {source!r}: write path/to/file.py:function or package.module:function")
    if target.endswith(".py"):
        path = pathlib.Path(target)
        if not path.is_file():
            raise PluginError(f"python dataset: file {target} not found")
        spec = importlib.util.spec_from_file_location(f"tvm_sima_dataset_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # a syntax error, a failing import in the user's file
            raise PluginError(f"python dataset: {target} failed to run: {type(err).__name__}: "
                              f"{one_line(err, limit=None)}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise PluginError(f"python dataset: cannot import {target} ({err}); if {target!r} is meant as a dataset "
                              f"plugin, it is not installed (known: {', '.join(sorted(dataset_plugins()))})") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise PluginError(f"python dataset: {target} has no function {func_name!r}")
    labels = None
    try:  # the user's code: any failure is reported as the dataset's, in one line
        result = func(**options)
        if isinstance(result, tuple) and len(result) == 2:
            result, labels = result
        batches = list(result)
    except Exception as err:
        raise PluginError(f"python dataset {source}: {type(err).__name__}: {one_line(err, limit=None)}") from None
    return Dataset(batches, None if labels is None else _label_batches(labels, batches, source), source)


def _label_batches(labels: Any, batches: list, source: str) -> list[np.ndarray]:
    """Labels per batch, from labels given per batch or as one array aligned with the samples."""
    sizes = [len(next(iter(b.values())) if isinstance(b, dict) else b) for b in batches]
    flat = np.asarray(labels) if isinstance(labels, np.ndarray) else None
    if flat is not None and flat.ndim == 1 and len(flat) == sum(sizes) and len(flat) != len(batches):
        return list(np.split(flat, np.cumsum(sizes)[:-1]))
    per_batch = [np.asarray(x) for x in labels]
    if len(per_batch) != len(batches):
        raise PluginError(f"{source}: {len(per_batch)} labels for {len(batches)} batches of {sum(sizes)} samples; "
                          "give one label array per batch, or one array with a label per sample")
    return per_batch


_BUILTIN_DATASETS: dict[str, Callable[..., Dataset]] = {
    "npy": npy_dataset, "npz": npz_dataset, "images": images_dataset, "python": python_dataset}


_BUILTIN_METRICS: dict[str, Callable[[], Any]] = {
    "top1": top1, "top5": top5, "cosine": Cosine, "sqnr": Sqnr, "max_abs_error": MaxAbsError}
