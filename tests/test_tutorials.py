"""Every tutorial runs, as a user would run it, and says what it claims."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


def run(script: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.mark.parametrize("script", TUTORIALS, ids=[t.name for t in TUTORIALS])
def test_tutorial_runs(script):
    result = run(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_tutorial_01_reports_bit_exactness():
    result = run(ROOT / "tutorials" / "01_integer_math_on_tflite.py")
    assert "tflite mode 32/32" in result.stdout
    assert "accuracy on 32 held-out digits" in result.stdout


def test_tutorial_01_missing_model_is_one_clear_line(tmp_path):
    result = run(ROOT / "tutorials" / "01_integer_math_on_tflite.py", "--model", str(tmp_path / "none.tflite"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == f"error: model file {tmp_path / 'none.tflite'} not found"


def test_tutorial_04_main_job_loses_little_accuracy(tmp_path):
    import re

    result = run(ROOT / "tutorials" / "04_quantize_a_model.py", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    found = re.search(r"float ([0-9.]+), int8 ([0-9.]+); int8 agrees with float on ([0-9.]+)", result.stdout)
    assert found, result.stdout
    float_acc, int_acc, agree = (float(g) for g in found.groups())
    assert float_acc > 0.85 and abs(float_acc - int_acc) <= 0.01 and agree >= 0.98
    assert "0 ops left in float" in result.stdout and "conv2d_0.input" in result.stdout
    assert {p.name for p in tmp_path.iterdir()} >= {"layers.json", "statistics.npz", "qconfig.json", "report.json"}


def test_tutorial_05_deployed_library_is_bit_exact_with_litert():
    result = run(ROOT / "tutorials" / "05_convert_build_deploy.py")
    assert result.returncode == 0, result.stderr
    assert "16/16 images bit-exact" in result.stdout and "0 op(s) left in float" in result.stdout
