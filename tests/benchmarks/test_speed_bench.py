"""The speed benchmark's harness (``benchmarks/speed_harness.py``, ``speed_worker.py``, ``bench_speed.py``) on the
repository's tiny digits models: real worker processes, real onnxruntime / LiteRT sessions."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from speed_harness import Row, Worker, cpu_info, peak_rss_mb, run_interleaved, table  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"

CPUINFO = """processor\t: 0
model name\t: Test CPU 9000
flags\t\t: fpu sse2 avx2 avx512f avx512bw
processor\t: 1
model name\t: Test CPU 9000
flags\t\t: fpu sse2 avx2 avx512f avx512bw
"""


def test_cpu_info_names_the_model_and_the_features():
    assert cpu_info(CPUINFO) == ("Test CPU 9000", {"avx2": True, "avx512f": True, "avx512bw": True,
                                                  "avx512_vnni": False})
    model, features = cpu_info()  # this machine's
    assert model != "unknown CPU" and set(features) == {"avx2", "avx512f", "avx512bw", "avx512_vnni"}


def test_peak_rss_is_vmhwm_and_sees_an_allocation():
    assert peak_rss_mb("Name:\tx\nVmHWM:\t  204800 kB\nVmRSS:\t 1024 kB\n") == 200.0
    with pytest.raises(ValueError, match="VmHWM"):
        peak_rss_mb("Name:\tx\n")
    code = ("import numpy as np, speed_harness as h; a = h.peak_rss_mb(); x = np.ones(64 << 20 >> 3 << 2); "
            "print(a, h.peak_rss_mb())")  # 256 MiB of float64, touched
    before, after = map(float, subprocess.run([sys.executable, "-c", code], cwd=ROOT / "benchmarks", check=True,
                                              capture_output=True, text=True).stdout.split())
    assert after - before > 240


def _workers(tmp_path: pathlib.Path) -> list[Worker]:
    x = np.load(FIXTURES / "digits_calib_nchw.npy")[:1]
    np.save(tmp_path / "nchw.npy", x)
    np.save(tmp_path / "nhwc.npy", x.transpose(0, 2, 3, 1))
    return [Worker("ort", {"kind": "ort", "path": str(FIXTURES / "digits_cnn_float.onnx"),
                           "input": str(tmp_path / "nchw.npy"), "round_s": 0.02}, threads=1),
            Worker("litert", {"kind": "litert", "path": str(FIXTURES / "digits_cnn_float.tflite"),
                              "input": str(tmp_path / "nhwc.npy"), "round_s": 0.02}, threads=1)]


def test_rounds_are_interleaved_round_robin_one_at_a_time(tmp_path):
    timings = run_interleaved(_workers(tmp_path), rounds=4, pause=0.0)
    spans = sorted((span, name) for name, t in timings.items() for span in t.spans)
    # round r starts with worker r % 2: ort litert | litert ort | ort litert | litert ort
    assert [name for _, name in spans] == ["ort", "litert", "litert", "ort"] * 2
    ends_and_starts = [(a[0][1], b[0][0]) for a, b in zip(spans, spans[1:], strict=False)]
    assert all(end <= start for end, start in ends_and_starts)  # never two configurations at once
    for t in timings.values():
        assert len(t.rounds) == 4 and all(ms > 0 for ms in t.rounds) and t.reps >= 1
        assert t.median_ms == sorted(t.rounds)[1] / 2 + sorted(t.rounds)[2] / 2
        assert t.peak_rss_mb is not None and t.peak_rss_mb > 20  # an interpreter with a runtime loaded


def test_a_worker_that_cannot_load_its_model_is_left_out_and_says_why(tmp_path):
    broken, good = _workers(tmp_path)
    broken.spec["path"] = str(tmp_path / "missing.onnx")
    timings = run_interleaved([broken, good], rounds=2, pause=0.0)
    assert timings["ort"].rounds == [] and re.search("worker 'ort'.*missing.onnx", timings["ort"].error)
    assert len(timings["litert"].rounds) == 2 and not timings["litert"].error


def test_table_gives_ratios_to_the_models_float_runtime():
    rows = [Row("m", "float runtime", ms=2.0, baseline=True, peak_rss_mb=50.2),
            Row("m", "int8", ms=3.0, build_s=12.34, peak_rss_mb=400.0),
            Row("m", "broken", note="ValueError: x"),
            Row("other", "no baseline", ms=1.0)]
    lines = table(rows).splitlines()
    assert lines[2] == "| m | float runtime | 2.00 | 1.00x | n/a | 50 |  |"
    assert lines[3] == "| m | int8 | 3.00 | 1.50x | 12.3 | 400 |  |"
    assert lines[4] == "| m | broken | n/a | n/a | n/a | n/a | ValueError: x |"
    assert lines[5] == "| other | no baseline | 1.00 | n/a | n/a | n/a |  |"


def test_calibration_stream_repeats_the_crops_with_seeded_noise():
    from bench_speed import NOISE, calibration_stream

    base = [np.full((1, 3, 2, 2), float(i), np.float32) for i in range(3)]
    stream = calibration_stream(base, 7)
    assert iter(stream) is stream  # a generator: nothing is held beyond the current sample
    got = list(stream)
    assert len(got) == 7 and all(g is b for g, b in zip(got[:3], base, strict=True))
    noise = got[4] - base[1]
    assert got[4].dtype == np.float32 and 0 < np.abs(noise).max() < 6 * NOISE
    np.testing.assert_array_equal(got[4], list(calibration_stream(base, 5))[4])  # the same noise each run
