"""Quantization on a local Ray cluster: the same model.so, byte for byte, as the single-process run; a killed
worker is restarted by Ray and the run still gives it."""

from __future__ import annotations

import hashlib
import os
import pathlib
import signal

import numpy as np
import pytest
from helpers.observers import assert_same_state
from helpers.onnx_models import calibration_images, digits_cnn

import tvm_sima
from tvm_sima.calibration import load_statistics
from tvm_sima.distributed import RayExecutor, npy_shards

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """Two CPUs, no dashboard, localhost only; the module's tests share it (starting Ray takes seconds)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray")
    mod, params = tvm_sima.load_model(str(digits_cnn(folder / "digits.onnx")))
    images = calibration_images(48)
    shard_dir = folder / "shards"
    shard_dir.mkdir()
    for k, part in enumerate(np.array_split(images, 3)):  # 16 samples each: three shards read by the workers
        np.save(shard_dir / f"part{k}.npy", part)
    return mod, params, [x[None] for x in images], shard_dir


def _model_so(qmod, path: pathlib.Path) -> str:
    tvm_sima.build(qmod).export_library(str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def local_run(digits, tmp_path_factory):
    """The single-process run: its model.so's hash and its statistics file."""
    mod, params, batches, _ = digits
    folder = tmp_path_factory.mktemp("local")
    qmod = tvm_sima.quantize(mod, params, batches, progress=False, work_dir=folder)
    return _model_so(qmod, folder / "model.so"), folder / "statistics.npz"


def _same_statistics(a: pathlib.Path, b: pathlib.Path) -> None:
    """Every observer's state, bit for bit (also what does not reach this model.so: samples, sums)."""
    first, second = load_statistics(a), load_statistics(b)
    assert set(first) == set(second)
    for name in first:
        assert_same_state(first[name].state_dict(), second[name].state_dict(), name)


def test_ray_gives_the_local_model_so_byte_for_byte(cluster, digits, local_run, tmp_path):
    mod, params, batches, shard_dir = digits
    shards = npy_shards(shard_dir, [("image", (1, 1, 8, 8), "float32")])
    assert len(shards.shards) == 3 and len(shards) == len(batches)
    finished = []
    executor = RayExecutor(workers=2, on_shard=lambda done, total: finished.append((done, total)))
    qmod = tvm_sima.quantize(mod, params, shards, progress=False, executor=executor, work_dir=tmp_path)
    assert finished == [(1, 3), (2, 3), (3, 3)]  # progress as the shards finish
    assert len(set(executor.worker_pids)) == 2 and os.getpid() not in executor.worker_pids
    assert _model_so(qmod, tmp_path / "model.so") == local_run[0]
    _same_statistics(tmp_path / "statistics.npz", local_run[1])


def test_a_killed_worker_is_restarted_and_the_result_is_the_same(cluster, digits, local_run, tmp_path):
    mod, params, batches, _ = digits
    killed = []

    def kill_one(done: int, total: int) -> None:
        if done == 1:  # the other shards are queued or running: kill a worker in the middle of the run
            os.kill(executor.worker_pids[0], signal.SIGKILL)
            killed.append(executor.worker_pids[0])

    executor = RayExecutor(workers=2, shard_batches=2, on_shard=kill_one)  # 24 shards of 2 batches
    qmod = tvm_sima.quantize(mod, params, batches, progress=False, executor=executor, work_dir=tmp_path)
    assert killed and not _alive(killed[0])
    assert _model_so(qmod, tmp_path / "model.so") == local_run[0]
    _same_statistics(tmp_path / "statistics.npz", local_run[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_bad_batch_on_a_worker_raises_the_local_error(cluster, digits):
    mod, params, batches, _ = digits
    bad = [b.copy() for b in batches[:4]]
    bad[3][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="has 1 NaN values in calibration data"):
        tvm_sima.quantize(mod, params, bad, progress=False, executor=RayExecutor(workers=1, shard_batches=2))


def test_the_cli_flag_gives_the_local_cli_model_so(cluster, digits, tmp_path):
    from tvm_sima.cli import main

    mod, params, batches, shard_dir = digits
    onnx = str(shard_dir.parent / "digits.onnx")
    np.save(tmp_path / "all.npy", np.concatenate(batches))  # the shards' samples, in the shards' order
    assert main(["quantize", onnx, "--calib", str(tmp_path / "all.npy"), "--output", str(tmp_path / "local")]) == 0
    assert main(["quantize", onnx, "--calib", str(shard_dir), "--ray", "auto", "--output", str(tmp_path / "ray")]) == 0
    assert (tmp_path / "ray" / "model.so").read_bytes() == (tmp_path / "local" / "model.so").read_bytes()


def _same_metrics(ray_run: list, local: list) -> None:
    """Every field and the paired sample of every tensor, exactly."""
    assert [m.name for m in ray_run] == [m.name for m in local]
    for a, b in zip(ray_run, local, strict=True):
        assert a.to_dict() == b.to_dict() and (a.count, a.batches) == (b.count, b.batches), a.name
        assert a._sums == b._sums, a.name
        for x, y in zip((*a.samples, a.sample_keys), (*b.samples, b.sample_keys), strict=True):
            assert np.array_equal(x, y), a.name


@pytest.mark.parametrize("mode", ["continuous", "isolated"])
def test_compare_tensors_on_ray_gives_the_local_metrics(cluster, digits, mode):
    from tvm_sima.compare import compare_tensors

    mod, params, batches, _ = digits
    qmod = tvm_sima.quantize(mod, params, batches[:8], progress=False)
    local_outputs: list = []
    local = compare_tensors(mod, params, qmod, batches, mode=mode, outputs=local_outputs)
    finished: list = []
    executor = RayExecutor(workers=2, shard_batches=5, on_shard=lambda done, total: finished.append(total))
    ray_outputs: list = []
    on_ray = compare_tensors(mod, params, qmod, batches, mode=mode, outputs=ray_outputs, executor=executor)
    assert finished == [10] * 10  # 48 batches in shards of 5, results merged as they came
    _same_metrics(on_ray, local)
    assert local[0].count > 0 and len(ray_outputs) == len(local_outputs) == len(batches)
    for (f_ray, q_ray), (f_local, q_local) in zip(ray_outputs, local_outputs, strict=True):  # in dataset order
        assert np.array_equal(f_ray, f_local) and np.array_equal(q_ray, q_local)


def test_the_report_flag_gives_the_local_per_layer_json(cluster, tmp_path):
    from tvm_sima.cli import main

    fixtures = pathlib.Path(__file__).parents[1] / "fixtures"
    command = ["report", str(fixtures / "digits_cnn_float.onnx"), "--calib", str(fixtures / "digits_calib_nchw.npy"),
               "--eval", str(fixtures / "digits_eval_nchw.npz")]
    assert main([*command, "--output", str(tmp_path / "local")]) == 0
    assert main([*command, "--ray", "auto", "--output", str(tmp_path / "ray")]) == 0
    local = (tmp_path / "local" / "per_layer.json").read_bytes()
    assert b'"isolated"' in local and b'"top1"' in local
    assert (tmp_path / "ray" / "per_layer.json").read_bytes() == local
    assert (tmp_path / "ray" / "report.html").read_bytes() == (tmp_path / "local" / "report.html").read_bytes()
