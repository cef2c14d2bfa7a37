"""Calibration scaled out: shards of a dataset observed on a Ray cluster, their statistics merged exactly.

``tvm_sima.quantize(mod, params, dataset, executor=RayExecutor(address="auto"))`` gives, bit for
bit, the module of the single-process run on the same batches (observers merge exactly:
:meth:`tvm_sima.calibration.Observer.merge`). Datasets read by the workers themselves:
:func:`npy_shards` (``.npy`` files), :func:`image_shards` (a folder of images); batches in memory
travel with their shards (:func:`array_shards`). Ray is the optional ``ray`` extra; it is imported
only when a :class:`RayExecutor` runs.
"""

from .ray_executor import RayExecutor
from .shards import ArrayShard, ImageShard, NpyShard, ShardedDataset, array_shards, image_shards, npy_shards

__all__ = ["ArrayShard", "ImageShard", "NpyShard", "RayExecutor", "ShardedDataset", "array_shards",
           "image_shards", "npy_shards"]
