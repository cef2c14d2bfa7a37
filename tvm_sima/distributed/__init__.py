"""Calibration and evaluation scaled out: shards of a dataset run on a Ray cluster, their results merged exactly.

``tvm_sima.quantize(mod, params, dataset, executor=RayExecutor(address="auto"))`` gives, bit for
bit, the module of the single-process run on the same batches (observers merge exactly:
:meth:`tvm_sima.calibration.Observer.merge`); ``compare_tensors(..., executor=...)`` its per-tensor
metrics (:meth:`tvm_sima.tensor_metrics.TensorMetrics.merge`). Datasets read by the workers themselves:
:func:`npy_shards` (``.npy`` files), :func:`image_shards` (a folder of images); batches in memory
travel with their shards (:func:`array_shards`). Ray is the optional ``ray`` extra; it is imported
only when a :class:`RayExecutor` runs.
"""

from .ray_executor import RayExecutor
from .shards import ArrayShard, ImageShard, NpyShard, ShardedDataset, ShardJob, array_shards, image_shards, npy_shards

__all__ = ["ArrayShard", "ImageShard", "NpyShard", "RayExecutor", "ShardJob", "ShardedDataset", "array_shards",
           "image_shards", "npy_shards"]
