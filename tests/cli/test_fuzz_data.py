"""Fuzz: random calibration / evaluation arrays (NaN, Inf, huge values, any dtype and shape).

Every array is saved as a ``.npy`` and read the way the command line reads it
(``tvm_sima.plugins.load_dataset`` for the digits CNN's input ``image: float32[N, 1, 8, 8]``).
Allowed outcomes: the data is accepted — then every value handed to the model is finite, of the
input's dtype and shape — or a :class:`~tvm_sima.plugins.PluginError` whose message is one line
naming the file. Anything else (another exception type, a non-finite value let through) fails.
A sample of the accepted and refused arrays also goes through ``tvm-sima quantize`` itself: exit
0 with a ``model.so``, or exit 1 with one ``tvm-sima: error:`` line and no output directory.
"""

from __future__ import annotations

import pathlib
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvm_sima.cli import main
from tvm_sima.plugins import InputSpec, PluginError, load_dataset

INPUT = [InputSpec("image", (-1, 1, 8, 8), "float32")]
SPECIAL = [np.nan, np.inf, -np.inf, 3.0e38, -3.0e38, 1e-45, 0.0, 1e30]
DTYPES = ["float32", "float64", "float16", "int8", "uint8", "int64", "bool", "complex64"]


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    """A mostly well-shaped digits batch, with special values, other dtypes and shapes mixed in."""
    shape = draw(st.sampled_from([(4, 1, 8, 8), (1, 1, 8, 8), (4, 8, 8, 1), (4, 1, 8), (0, 1, 8, 8), (4, 1, 8, 9),
                                  (2, 3, 8, 8), (64,)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.random(shape) * draw(st.sampled_from([1.0, 1e-30, 1e6, 3e38]))
    for _ in range(draw(st.integers(0, 3))):
        if values.size:
            values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from(SPECIAL))
    dtype = draw(st.sampled_from(DTYPES))
    with np.errstate(all="ignore"):
        return values.astype(dtype)


def _check(array: np.ndarray, path: pathlib.Path) -> bool:
    """The outcome rules of the module docstring; True when the data was accepted."""
    np.save(path, array)
    try:
        data = load_dataset(str(path), INPUT)
    except PluginError as err:
        message = str(err)
        assert "\n" not in message and path.name in message, message
        return False
    for batch in data.batches:
        x = batch["image"] if isinstance(batch, dict) else batch
        assert x.dtype == np.float32 and x.shape[1:] == (1, 8, 8), (x.dtype, x.shape)
        assert np.isfinite(x).all(), "a non-finite value reached the model"
    return True


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # examples: the profile
@given(array=arrays())
def test_random_arrays_are_accepted_clean_or_refused_in_one_line(array):
    with tempfile.TemporaryDirectory() as tmp:
        _check(array, pathlib.Path(tmp) / "data.npy")


with np.errstate(over="ignore"):
    CLI_CASES = {  # one array per outcome kind, through the whole command: (array, error line fragment or None)
        "finite": (np.random.default_rng(0).random((4, 1, 8, 8)).astype("float32"), None),
        "tiny": (np.full((4, 1, 8, 8), 1e-45, np.float32), None),
        "uint8": ((np.random.default_rng(1).random((4, 1, 8, 8)) * 255).astype("uint8"), None),
        # finite input whose convolutions overflow float32: the calibration names the tensor
        "huge": (np.full((4, 1, 8, 8), 3e38, np.float32), "tensor 'conv2d_1.input' has 387 Inf values"),
        "inf": (np.where(np.eye(8, dtype=bool), np.inf, 0.5).astype("float32").reshape(1, 1, 8, 8).repeat(4, 0),
                "sample 0, input 'image': 8 Inf value(s)"),
        "float16_overflow": (np.full((4, 1, 8, 8), 1e6).astype("float16"), "sample 0, input 'image': 64 Inf value(s)"),
        "empty": (np.zeros((0, 1, 8, 8), np.float32), "0 sample(s), fewer than one batch of 1"),
        "bool": (np.ones((4, 1, 8, 8), bool), "array of dtype bool; the model takes float32"),
    }


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_quantize_on_each_kind_of_array_succeeds_or_fails_in_one_line(case, tmp_path, fixtures_dir, capsys):
    calib = tmp_path / f"{case}.npy"
    array, expected_error = CLI_CASES[case]
    accepted = _check(array, calib)
    out = tmp_path / "q"
    code = main(["quantize", str(fixtures_dir / "digits_cnn_float.onnx"), "--calib", str(calib), "--output", str(out)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    if expected_error is None:
        assert code == 0 and accepted and (out / "model.so").is_file(), captured.err
    else:
        errors = [line for line in captured.err.splitlines() if line.startswith("tvm-sima: error:")]
        assert code == 1 and len(errors) == 1 and expected_error in errors[0], captured.err
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".q.")]
