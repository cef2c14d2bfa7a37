"""Calibration on a Ray cluster: the program built once, shards observed by a pool of actors, statistics merged.

:class:`RayExecutor` is a :class:`~tvm_sima.passes.calibrate.CalibrationExecutor`. It compiles the
calibration program once, on the driver, and ships it to the workers as an exported library
(the ``.so`` bytes, through Ray's object store); each actor loads it once and observes whole
shards (:mod:`tvm_sima.distributed.shards`: ``.npy`` files and image files are read by the
worker itself, only their paths travel). A shard's observers come back and are merged into the
driver's (:meth:`~tvm_sima.calibration.Observer.merge`, exact), in whatever order shards finish,
so the statistics are bit for bit those of the single-process run. An actor that dies (its
machine lost, its process killed) is restarted by Ray and its shard observed again from the
start: the result does not change.

Ray is the optional ``ray`` extra; this is the only module that imports it, and only when an
executor runs.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import tempfile
from typing import Any, Callable, Iterable, Iterator, Optional

from ..calibration import Observer
from ..calibration.data_checks import Batch
from ..passes.calibrate import CalibrationInput, CompileFunction, calibration_inputs, observe_batches
from ..progress import Progress
from .shards import SHARD_BATCHES, ShardedDataset, array_shards

__all__ = ["RayExecutor"]

LOG = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError("RayExecutor needs Ray: pip install 'tvm-sima[ray]' (ray==2.60.0), on the driver and on "
                          "every node of the cluster") from None
    return ray


class _Worker:
    """A Ray actor: the calibration library loaded once, then one shard observed per call."""

    def __init__(self, shipped: list[Any], inputs: list[CalibrationInput]) -> None:
        import ray
        import tvm
        from tvm import relax

        library, templates = ray.get(shipped)  # references in a list: a restarted actor fetches them again
        handle, path = tempfile.mkstemp(suffix=".so", prefix="tvm_sima_calibration_")
        with os.fdopen(handle, "wb") as out:
            out.write(library)
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
        os.unlink(path)  # loaded: the file is no longer needed
        self.inputs, self.templates = inputs, templates

    def pid(self) -> int:
        return os.getpid()

    def observe(self, shard: Any) -> tuple[int, list[Observer]]:
        """Fresh observers fed every batch of ``shard`` (each with its index in the dataset); the batch count."""
        observers = copy.deepcopy(self.templates)
        count = observe_batches(self.vm, self.inputs, observers, shard.batches())
        return count, observers


def _library(executable: Any) -> bytes:
    """The executable exported as a shared library, as bytes (what travels to the workers)."""
    with tempfile.TemporaryDirectory(prefix="tvm_sima_ray_") as folder:
        path = os.path.join(folder, "calibration.so")
        executable.export_library(path)
        with open(path, "rb") as handle:
            return handle.read()


class RayExecutor:
    """Calibrate on a Ray cluster (see the module docstring).

    Parameters
    ----------
    address : str, optional
        The cluster for ``ray.init(address=...)`` (``"auto"``: the one this machine belongs to,
        ``"ray://host:10001"``: a remote one; ``"local"``: a new one on this machine). None: the
        Ray already initialized in this process, or a new local one. Local clusters start without
        a dashboard and listen on localhost only.
    workers : int, optional
        Actors to start (default: the cluster's CPUs, at most the number of shards).
    shard_batches : int
        Batches per shard when the dataset is not already a :class:`ShardedDataset` (in-memory
        batches then travel with their shards).
    retries : int
        Times Ray restarts a dead actor and retries its shard.
    threads_per_worker : int
        TVM threads of each actor (``TVM_NUM_THREADS``; one actor per CPU by default).
    progress : bool, optional
        Show finished shards on stderr (default: when stderr is a terminal).
    on_shard : callable, optional
        Called as ``on_shard(finished, total)`` on the driver as each shard's statistics are merged.
    """

    def __init__(self, address: Optional[str] = None, workers: Optional[int] = None,
                 shard_batches: int = SHARD_BATCHES, retries: int = 3, threads_per_worker: int = 1,
                 progress: Optional[bool] = None, on_shard: Optional[Callable[[int, int], None]] = None) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"RayExecutor(workers={workers}): give at least one worker, or None for one per CPU")
        if shard_batches < 1:
            raise ValueError(f"RayExecutor(shard_batches={shard_batches}): a shard holds at least one batch")
        if retries < 0 or threads_per_worker < 1:
            raise ValueError(f"RayExecutor(retries={retries}, threads_per_worker={threads_per_worker}): retries is "
                             "0 or more, threads_per_worker 1 or more")
        self.address, self.workers, self.shard_batches, self.retries = address, workers, shard_batches, retries
        self.threads_per_worker, self.progress, self.on_shard = threads_per_worker, progress, on_shard
        self.worker_pids: list[int] = []

    def connect(self) -> Any:
        """Ray, initialized: connected to :attr:`address` (or started) unless this process already is."""
        ray = _ray()
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False} if self.address in (None, "local") else {}
            ray.init(address=self.address, log_to_driver=False, **options)
        return ray

    def _actors(self, ray: Any, shipped: list[Any], inputs: list[CalibrationInput], shards: int) -> list[Any]:
        count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(_Worker).options(
            num_cpus=1, max_restarts=self.retries, max_task_retries=self.retries,
            runtime_env={"env_vars": {"TVM_NUM_THREADS": str(self.threads_per_worker)}})
        actors = [actor.remote(shipped, inputs) for _ in range(min(count, shards))]
        self.worker_pids = ray.get([a.pid.remote() for a in actors])
        return actors

    def observe(self, mod: Any, dataset: Iterable[Batch], tap_observers: list[Observer],
                build: CompileFunction, log_every: int) -> int:
        """Observe every shard of ``dataset`` on the cluster; merge into ``tap_observers``; the batch count."""
        ray = self.connect()
        shards = dataset.shards if isinstance(dataset, ShardedDataset) else \
            array_shards(dataset, self.shard_batches).shards
        if not shards or not any(s.count for s in shards):
            raise ValueError("the calibration dataset is empty")
        templates = [copy.deepcopy(obs) for obs in tap_observers]
        shipped = [ray.put(_library(build(mod))), ray.put(templates)]  # held here while actors may restart
        actors = self._actors(ray, shipped, calibration_inputs(mod), len(shards))
        try:
            return self._reduce(ray, actors, shards, tap_observers)
        finally:
            for a in actors:
                ray.kill(a)

    def _reduce(self, ray: Any, actors: list[Any], shards: list[Any], tap_observers: list[Observer]) -> int:
        from ray.util import ActorPool

        pool = ActorPool(actors)
        results = _unwrapped(ray, pool.map_unordered(lambda a, shard: a.observe.remote(shard), shards))
        show = sys.stderr.isatty() if self.progress is None else self.progress
        total = 0
        for finished, (count, observers) in enumerate(Progress(results, "calibrating on Ray", show, unit="shards"),
                                                      start=1):
            for mine, theirs in zip(tap_observers, observers, strict=True):
                mine.merge(theirs)
            total += count
            LOG.info("calibration: %d/%d shards, %d batches", finished, len(shards), total)
            if self.on_shard is not None:
                self.on_shard(finished, len(shards))
        return total


def _unwrapped(ray: Any, results: Iterator[Any]) -> Iterator[Any]:
    """The pool's results; a shard's own error (bad data, a NaN) raised as it was raised on the worker."""
    while True:
        try:
            yield next(results)
        except StopIteration:
            return
        except ray.exceptions.RayTaskError as err:
            cause = err.cause if isinstance(err.cause, Exception) else None
            if cause is None:
                raise
            raise cause from None
