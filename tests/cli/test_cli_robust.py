"""The command line on careless input: one line on stderr, exit 1, and nothing half-written.

Every case runs ``tvm_sima.cli.main`` on real files (NaN data, wrong dtypes and shapes, truncated
files, an ``--output`` that is a file, a model whose failure comes after files were written ...)
and checks the contract of issue 13: exit status 1, exactly one stderr line starting
``tvm-sima: error:``, no traceback, and the ``--output`` directory absent (or unchanged) afterwards,
with no staging directory left beside it. :func:`careless_files`, :data:`CARELESS` and
:func:`assert_clean_failure` are meant to be reused by a fuzz battery.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tvm_sima.cli import main
from tvm_sima.cli_report import default_metrics

# ---------------------------------------------------------------------------- helpers (reusable)


def careless_files(tmp: pathlib.Path, fixtures: pathlib.Path) -> dict[str, pathlib.Path]:
    """Write the careless inputs into ``tmp``: bad data for the digits CNN (input image[1, 1, 8, 8]), bad files."""
    calib = np.load(fixtures / "digits_calib_nchw.npy")
    files = {}

    def save(name: str, array: np.ndarray) -> None:
        files[name] = tmp / f"{name}.npy"
        np.save(files[name], array, allow_pickle=array.dtype == object)

    nan = calib.copy()
    nan[3, 0, 2, 2] = np.nan
    save("nan", nan)
    save("all_nan", np.full_like(calib, np.nan))
    save("complex", calib.astype(np.complex64))
    save("strings", np.full((4, 1, 8, 8), "x"))
    save("objects", np.array([1, "a", None], dtype=object))
    save("nhwc", calib.transpose(0, 2, 3, 1))
    save("huge", calib * 1e30)  # finite: calibrated, not refused
    evaluation = dict(np.load(fixtures / "digits_eval_nchw.npz"))
    evaluation["image"] = evaluation["image"].copy()
    evaluation["image"][5, 0, 1, 1] = np.inf
    files["inf_eval"] = tmp / "inf_eval.npz"
    np.savez(files["inf_eval"], **evaluation)
    for name, source, size in (("truncated.npy", files["nan"], 100), ("truncated_npz.npz", files["inf_eval"], 300),
                               ("truncated_tflite.tflite", fixtures / "digits_int8.tflite", 200),
                               ("truncated_onnx.onnx", fixtures / "digits_cnn_float.onnx", 300)):
        files[name] = tmp / name
        files[name].write_bytes(source.read_bytes()[:size])
    files["dataset_py"] = tmp / "careless_data.py"
    files["dataset_py"].write_text(
        "import numpy as np\n"
        "def raises():\n    raise RuntimeError('the camera is unplugged\\nsecond line')\n"
        "def wide():\n    return [np.zeros((1, 1, 8, 9), np.float32)]\n"
        "def interrupted():\n    raise KeyboardInterrupt\n")
    files["a_file"] = tmp / "a_file"
    files["a_file"].write_text("not a directory")
    files["trim_toml"] = tmp / "trim.toml"
    files["trim_toml"].write_text("trim_infinity_before_statistic = true\n")
    return files


ONNX, CALIB, EVAL = "{f}/digits_cnn_float.onnx", "{f}/digits_calib_nchw.npy", "{f}/digits_eval_nchw.npz"

#: (argv, fragment of the one error line); {f}: fixtures, {t}: the careless files' directory, output {t}/o.
CARELESS = [
    (["quantize", ONNX, "--calib", "{t}/nan.npy"], "nan.npy: sample 3, input 'image': 1 NaN value(s)"),
    (["quantize", ONNX, "--calib", "{t}/all_nan.npy", "--config", "{t}/trim.toml"],
     "input(s) ['image'] have no finite value in any of 64 sample(s)"),
    (["quantize", ONNX, "--calib", "{t}/complex.npy"], "array of dtype complex64; the model takes float32"),
    (["quantize", ONNX, "--calib", "{t}/strings.npy"], "the model takes float32"),
    (["quantize", ONNX, "--calib", "{t}/objects.npy"], "objects.npy: not a readable .npy file"),
    (["quantize", ONNX, "--calib", "{t}/nhwc.npy"], "has shape (64, 8, 8, 1); the model takes (N, 1, 8, 8)"),
    (["quantize", ONNX, "--calib", "{t}/truncated.npy"], "not a readable .npy file"),
    (["quantize", ONNX, "--calib", "{t}/careless_data.py:raises"],
     "careless_data.py:raises: RuntimeError: the camera is unplugged"),
    (["quantize", ONNX, "--calib", "{t}/careless_data.py:wide"],
     "batch 0, input 'image': shape (1, 1, 8, 9); the model takes (1, 1, 8, 8)"),
    (["report", ONNX, "--calib", CALIB, "--eval", "{t}/inf_eval.npz"],
     "inf_eval.npz: sample 5, input 'image': 1 Inf value(s)"),
    (["report", ONNX, "--calib", CALIB, "--eval", "{t}/truncated_npz.npz"], "not a readable .npz file"),
    (["report", ONNX, "--calib", CALIB, "--eval", "{t}/complex.npy"], "array of dtype complex64"),
    (["quantize", "{t}/truncated_onnx.onnx", "--calib", CALIB], "truncated_onnx.onnx"),
    (["convert", "{t}/truncated_tflite.tflite"], "truncated_tflite.tflite"),
    (["build", "{t}/truncated_tflite.tflite"], "truncated_tflite.tflite"),
    (["build", ONNX, "--statistics", "{t}/nan.npy"], "nan.npy: not a tvm-sima statistics file (an array, not a "
                                                       "statistics.npz)"),
    (["build", ONNX, "--statistics", "{t}/truncated_npz.npz"], "truncated_npz.npz: not a tvm-sima statistics file"),
]


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """``main(argv)`` and what it printed: ``(exit status, stdout, stderr)``."""
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean_failure(code: int, out: str, err: str, fragment: str, output: pathlib.Path,
                         before: dict | None = None) -> None:
    """Exit 1, one ``tvm-sima: error:`` line holding ``fragment``, no traceback, ``output`` as it was."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1, (code, err)
    assert len(lines) == 1 and lines[0].startswith("tvm-sima: error:"), lines
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert snapshot(output) == (before or {}), "a failed run changed its --output"
    leftovers = [p.name for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.")] \
        if output.parent.is_dir() else []
    assert not leftovers, f"staging directories left behind: {leftovers}"


def snapshot(path: pathlib.Path) -> dict:
    """``{relative path: bytes}`` of every file under ``path`` (empty when it does not exist)."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()} \
        if path.is_dir() else {}


@pytest.fixture
def careless(tmp_path, fixtures_dir):
    return careless_files(tmp_path, fixtures_dir)


# ---------------------------------------------------------------------------- careless inputs


@pytest.mark.parametrize("argv, fragment", CARELESS, ids=[f"{a[0]}-{pathlib.Path(a[3 if len(a) > 3 else 1]).name}"
                                                          for a, _ in CARELESS])
def test_careless_input_fails_in_one_line_and_writes_nothing(argv, fragment, careless, fixtures_dir, tmp_path, capsys):
    argv = [a.format(f=fixtures_dir, t=tmp_path) for a in argv] + ["--output", str(tmp_path / "o")]
    assert_clean_failure(*run(argv, capsys), fragment, tmp_path / "o")


def test_huge_but_finite_calibration_values_are_accepted(careless, fixtures_dir, tmp_path, capsys):
    code, _, err = run(["quantize", str(fixtures_dir / "digits_cnn_float.onnx"), "--calib", str(careless["huge"]),
                        "--output", str(tmp_path / "q")], capsys)
    assert code == 0, err
    assert (tmp_path / "q" / "model.so").is_file()


def test_nan_calibration_with_trimming_configured_is_calibrated(careless, fixtures_dir, tmp_path, capsys):
    """trim_infinity_before_statistic = true: the user asked for NaN to be dropped from the statistics."""
    code, _, err = run(["quantize", str(fixtures_dir / "digits_cnn_float.onnx"), "--calib", str(careless["nan"]),
                        "--config", str(careless["trim_toml"]), "--output", str(tmp_path / "q")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "q" / "report.json").read_text())["work_dir"] == str(tmp_path / "q")


# ---------------------------------------------------------------------------- --output


@pytest.mark.parametrize("command", ["quantize", "report", "convert", "build"])
def test_output_naming_an_existing_file_is_one_line_and_the_file_stays(command, careless, fixtures_dir, capsys):
    model = fixtures_dir / ("digits_int8.tflite" if command in ("convert", "build") else "digits_cnn_float.onnx")
    data = {"quantize": ["--calib", CALIB], "report": ["--calib", CALIB, "--eval", EVAL]}.get(command, [])
    argv = [command, str(model), *(a.format(f=fixtures_dir) for a in data), "--output", str(careless["a_file"])]
    assert_clean_failure(*run(argv, capsys), "is a file, not a directory", careless["a_file"],
                         {"": b"not a directory"})


def test_output_below_a_file_or_in_an_unwritable_place(careless, fixtures_dir, tmp_path, capsys):
    model = str(fixtures_dir / "digits_int8.tflite")
    assert_clean_failure(*run(["convert", model, "--output", str(careless["a_file"] / "sub")], capsys),
                         "a_file is a file, not a directory", careless["a_file"] / "sub")
    code, out, err = run(["convert", model, "--output", "/proc/tvm_sima_no_such_dir/out"], capsys)  # even as root
    assert code == 1 and err.count("\n") == 1 and "cannot create /proc/tvm_sima_no_such_dir" in err
    assert not pathlib.Path("/proc/tvm_sima_no_such_dir").exists()


def test_output_with_files_of_the_user_is_refused_untouched(fixtures_dir, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    before = snapshot(tmp_path / "mine")
    assert_clean_failure(*run(["convert", str(fixtures_dir / "digits_int8.tflite"), "--output",
                               str(tmp_path / "mine")], capsys),
                         "already holds files tvm-sima did not write (notes.txt)", tmp_path / "mine", before)


def test_a_failed_run_leaves_an_earlier_output_unchanged_and_a_good_run_replaces_it(careless, fixtures_dir,
                                                                                   tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.so").write_bytes(b"an earlier run's library")
    (out / "report.html").write_text("an earlier report")
    before = snapshot(out)
    assert_clean_failure(*run(["quantize", str(fixtures_dir / "digits_cnn_float.onnx"), "--calib",
                               str(careless["nan"]), "--output", str(out)], capsys), "NaN", out, before)
    # a good run replaces the directory as a whole: the stale report.html of the earlier run is gone
    code, _, err = run(["convert", str(fixtures_dir / "digits_int8.tflite"), "--output", str(out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["artifacts", "convert_report.json", "model.so"]
    assert (out / "model.so").read_bytes() != b"an earlier run's library"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_missing_parent_directories_are_created_and_removed_again_on_failure(careless, fixtures_dir, tmp_path,
                                                                             capsys):
    deep = tmp_path / "a" / "b" / "q"
    assert_clean_failure(*run(["quantize", str(fixtures_dir / "digits_cnn_float.onnx"), "--calib",
                               str(careless["nan"]), "--output", str(deep)], capsys), "NaN", deep)
    assert not (tmp_path / "a").exists()


def test_a_late_failure_after_files_were_written_leaves_nothing(fixtures_dir, tmp_path, capsys):
    """Statistics of another model: layers.json is written, then realize finds no statistics for a tensor."""
    code, _, err = run(["quantize", str(fixtures_dir / "digits_cnn_float.onnx"), "--calib",
                        str(fixtures_dir / "digits_calib_nchw.npy"), "--output", str(tmp_path / "q")], capsys)
    assert code == 0, err
    deep = deep_cnn(tmp_path / "deep.onnx", 4)
    assert_clean_failure(*run(["build", str(deep), "--statistics", str(tmp_path / "q" / "statistics.npz"),
                               "--output", str(tmp_path / "b")], capsys), "no calibration statistics", tmp_path / "b")


# ---------------------------------------------------------------------------- exit statuses


def test_an_unexpected_exception_is_one_line_and_the_traceback_is_opt_in(fixtures_dir, tmp_path, capsys,
                                                                        monkeypatch):
    """A metric plugin (registered in process, a real extension point) that fails after everything ran."""
    from tvm_sima import plugins

    class Broken:
        def update(self, reference, test, labels):
            raise ZeroDivisionError("metric divides by zero\nsecond line")

        def result(self):
            return 0.0

    monkeypatch.setitem(plugins._METRICS, "broken_for_test", Broken)  # register_metric, undone after the test
    argv = ["report", str(fixtures_dir / "digits_cnn_float.onnx"), "--calib", CALIB.format(f=fixtures_dir),
            "--eval", EVAL.format(f=fixtures_dir), "--mode", "continuous", "--metric", "broken_for_test",
            "--output", str(tmp_path / "r")]
    monkeypatch.delenv("TVM_SIMA_DEBUG", raising=False)
    assert_clean_failure(*run(argv, capsys), "ZeroDivisionError: metric divides by zero (report ", tmp_path / "r")
    monkeypatch.setenv("TVM_SIMA_DEBUG", "1")
    code, _, err = run(argv, capsys)
    assert code == 1 and "Traceback" in err and err.strip().splitlines()[-1].startswith("tvm-sima: error: Zero")
    assert not (tmp_path / "r").exists()


def test_ctrl_c_exits_130_quietly_and_writes_nothing(careless, fixtures_dir, tmp_path, capsys):
    code, out, err = run(["quantize", str(fixtures_dir / "digits_cnn_float.onnx"), "--calib",
                          f"{careless['dataset_py']}:interrupted", "--output", str(tmp_path / "q")], capsys)
    assert code == 130 and err == "" and "Traceback" not in out
    assert not (tmp_path / "q").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".q.")]


# ---------------------------------------------------------------------------- artifact names


def deep_cnn(path: pathlib.Path, blocks: int, out_channels: int = 4) -> pathlib.Path:
    """x[1, 4, 4, 4] -> (Conv 1x1 -> Relu) x blocks: one offloaded region whose symbol names every op."""
    rng = np.random.default_rng(0)
    nodes, inits, cur = [], [], "x"
    for k in range(blocks):
        cout = out_channels if k == blocks - 1 else 4
        inits.append(numpy_helper.from_array((rng.standard_normal((cout, 4, 1, 1)) * 0.5).astype("float32"), f"w{k}"))
        nodes += [helper.make_node("Conv", [cur, f"w{k}"], [f"c{k}"], name=f"conv{k}"),
                  helper.make_node("Relu", [f"c{k}"], [f"r{k}"], name=f"relu{k}")]
        cur = f"r{k}"
    graph = helper.make_graph(nodes, "deep", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4])],
                              [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, out_channels, 4, 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_quantize_a_deep_cnn_whose_region_name_is_longer_than_a_file_name(tmp_path, capsys):
    """Before: [Errno 36] File name too long: '.../artifacts/fused_sima_conv2d_sima_quantize_info_...'."""
    from tvm_sima.codegen import load_program

    model = deep_cnn(tmp_path / "deep.onnx", 12)
    np.save(tmp_path / "calib.npy", np.random.default_rng(1).standard_normal((8, 4, 4, 4)).astype(np.float32))
    code, _, err = run(["quantize", str(model), "--calib", str(tmp_path / "calib.npy"), "--output",
                        str(tmp_path / "q")], capsys)
    assert code == 0, err
    (region,) = (tmp_path / "q" / "artifacts").iterdir()
    assert region.name == "region_000"
    program = load_program(region)
    assert len(program.graph["name"]) > 255 and program.graph["name"].startswith("fused_sima_conv2d")
    assert [op["op"] for op in program.graph["ops"]] == ["sima.conv2d"] * 12


# ---------------------------------------------------------------------------- report's default metrics


@pytest.mark.parametrize("dims, labelled, top1", [
    ([1, 10], False, True), ([None, 10], False, True), ([1, 1000, 1, 1], False, True),
    ([1, 1, 8, 8], False, False), ([1, 100, 4], False, False), ([1, 1], False, False), ([1, None], False, False),
    ([], False, False), ([1, 1, 8, 8], True, True),
])
def test_default_metrics_keep_top1_only_for_class_scores_or_labels(dims, labelled, top1):
    names, note = default_metrics(dims, "float32[...]", labelled)
    assert {"cosine", "sqnr", "max_abs_error"} <= set(names) and ("top1" in names) == top1
    assert (note is None) == top1 and (top1 or "top1 left out" in note)


def test_report_on_a_segmentation_map_leaves_top1_out_and_says_why(fixtures_dir, tmp_path, capsys):
    """A 1x1x4x4 output map, eval data without labels: top1 of it would be noise."""
    model = deep_cnn(tmp_path / "seg.onnx", 2, out_channels=1)
    data = np.random.default_rng(2).standard_normal((8, 4, 4, 4)).astype(np.float32)
    np.save(tmp_path / "calib.npy", data)
    np.save(tmp_path / "eval.npy", data[:4])
    code, out, err = run(["report", str(model), "--calib", str(tmp_path / "calib.npy"), "--eval",
                          str(tmp_path / "eval.npy"), "--mode", "continuous", "--output", str(tmp_path / "r")], capsys)
    assert code == 0, err
    assert "top1 left out: the output float32[1, 1, 4, 4] is not a (batch, classes) score vector" in out
    scores = json.loads((tmp_path / "r" / "per_layer.json").read_text())["output_metrics"]
    assert set(scores) == {"cosine", "sqnr", "max_abs_error"}
    assert "top-k" not in out.splitlines()[-2]  # the "output: ..." line
