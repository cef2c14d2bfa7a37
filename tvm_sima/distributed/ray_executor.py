"""Calibration and evaluation on a Ray cluster: programs built once, shards run by a pool of actors, merged.

:class:`RayExecutor` is a :class:`~tvm_sima.passes.calibrate.CalibrationExecutor` and the
``executor`` of :func:`tvm_sima.compare.compare_tensors`. Both go through
:meth:`RayExecutor.map_shards`: the programs are compiled once, on the driver, and shipped to the
workers as exported libraries (the ``.so`` bytes, through Ray's object store); each actor loads
them once and runs a job (:class:`~tvm_sima.distributed.shards.ShardJob`) on whole shards
(:mod:`tvm_sima.distributed.shards`: ``.npy`` files and image files are read by the worker
itself, only their paths travel). A shard's result (observers, tensor metrics) comes back and is
merged into the driver's exactly, in whatever order shards finish, so the result is bit for bit
that of the single-process run. An actor that dies (its machine lost, its process killed) is
restarted by Ray and its shard run again from the start: the result does not change.

Ray is the optional ``ray`` extra; this is the only module that imports it, and only when an
executor runs.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from ..calibration import Observer
from ..calibration.data_checks import Batch
from ..passes.calibrate import CalibrationInput, CompileFunction, calibration_inputs, observe_batches
from ..progress import Progress
from .shards import SHARD_BATCHES, ShardedDataset, ShardJob, array_shards

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
    """A Ray actor: the shipped libraries loaded once (one VM each), then one shard run by the job per call."""

    def __init__(self, shipped: list[Any]) -> None:
        import ray
        import tvm
        from tvm import relax

        libraries, self.job = ray.get(shipped)  # references in a list: a restarted actor fetches them again
        self.vms = []
        for library in libraries:
            handle, path = tempfile.mkstemp(suffix=".so", prefix="tvm_sima_worker_")
            with os.fdopen(handle, "wb") as out:
                out.write(library)
            self.vms.append(relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu()))
            os.unlink(path)  # loaded: the file is no longer needed

    def pid(self) -> int:
        return os.getpid()

    def run(self, shard: Any) -> Any:
        """The job's result on every batch of ``shard`` (each with its index in the dataset)."""
        return self.job.run(self.vms, shard.batches())


@dataclass(frozen=True)
class _Observe:
    """Calibration's job: fresh observers fed a shard's batches; ``(batch count, observers)``."""

    inputs: list[CalibrationInput]
    templates: list[Observer]

    def run(self, vms: list[Any], batches: Iterable[tuple[int, Batch]]) -> tuple[int, list[Observer]]:
        observers = copy.deepcopy(self.templates)
        return observe_batches(vms[0], self.inputs, observers, batches), observers


def _library(executable: Any) -> bytes:
    """The executable exported as a shared library, as bytes (what travels to the workers)."""
    with tempfile.TemporaryDirectory(prefix="tvm_sima_ray_") as folder:
        path = os.path.join(folder, "program.so")
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

    def shards(self, dataset: Iterable[Batch]) -> list[Any]:
        """``dataset``'s shards: its own (a :class:`ShardedDataset`), or its batches cut by :attr:`shard_batches`."""
        if isinstance(dataset, ShardedDataset):
            return dataset.shards
        return array_shards(dataset, self.shard_batches).shards

    def map_shards(self, executables: Sequence[Any], job: ShardJob, shards: Sequence[Any],
                   label: str) -> Iterator[Any]:
        """``job.run(vms, shard.batches())`` for every shard on the cluster, the results as shards finish.

        The one place where programs travel: each executable is exported once, on the driver, and
        every actor loads them all (``vms[i]`` runs ``executables[i]``). ``job`` must be picklable;
        it travels once too. The actors are killed when every result has been read (or the caller
        stops reading). An error of a shard's own (bad data) is raised as it was on the worker.
        """
        ray = self.connect()
        shipped = [ray.put([_library(e) for e in executables]), ray.put(job)]  # held here while actors restart
        count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(_Worker).options(
            num_cpus=1, max_restarts=self.retries, max_task_retries=self.retries,
            runtime_env={"env_vars": {"TVM_NUM_THREADS": str(self.threads_per_worker)}})
        actors = [actor.remote(shipped) for _ in range(min(count, len(shards)))]
        try:
            self.worker_pids = ray.get([a.pid.remote() for a in actors])
            yield from self._finished(ray, actors, shards, label)
        finally:
            for a in actors:
                ray.kill(a)

    def _finished(self, ray: Any, actors: list[Any], shards: Sequence[Any], label: str) -> Iterator[Any]:
        from ray.util import ActorPool

        results = _unwrapped(ray, ActorPool(actors).map_unordered(lambda a, shard: a.run.remote(shard), list(shards)))
        show = sys.stderr.isatty() if self.progress is None else self.progress
        for finished, result in enumerate(Progress(results, f"{label} on Ray", show, unit="shards"), start=1):
            yield result
            LOG.info("%s: %d/%d shards", label, finished, len(shards))
            if self.on_shard is not None:
                self.on_shard(finished, len(shards))

    def observe(self, mod: Any, dataset: Iterable[Batch], tap_observers: list[Observer],
                build: CompileFunction, log_every: int) -> int:
        """Observe every shard of ``dataset`` on the cluster; merge into ``tap_observers``; the batch count."""
        shards = self.shards(dataset)
        if not shards or not any(s.count for s in shards):
            raise ValueError("the calibration dataset is empty")
        job = _Observe(calibration_inputs(mod), [copy.deepcopy(obs) for obs in tap_observers])
        total = 0
        for count, observers in self.map_shards([build(mod)], job, shards, "calibrating"):
            for mine, theirs in zip(tap_observers, observers, strict=True):
                mine.merge(theirs)
            total += count
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
