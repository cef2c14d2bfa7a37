"""Dataset and metric plugins: the built-ins, a Python callable, and a metric from an installed entry point."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tvm_sima import plugins
from tvm_sima.plugins import Cosine, InputSpec, PluginError, Sqnr, get_metric, load_dataset

NCHW = [InputSpec("image", (1, 1, 8, 8))]
NHWC = [InputSpec("image", (1, 8, 8, 1))]


@pytest.fixture(scope="module")
def digits(fixtures_dir):
    with np.load(fixtures_dir / "digits_eval_nchw.npz") as npz:
        return npz["image"][:12], npz["labels"][:12]


def write_image_folder(root: pathlib.Path, images: np.ndarray, labels: np.ndarray, size: int = 8) -> None:
    """The digits as 8-bit grayscale PNGs in one sub-folder per class (upscaled when size > 8)."""
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pil = Image.fromarray(np.round(image[0] * 255).astype(np.uint8), mode="L")
        pil.resize((size, size), Image.Resampling.NEAREST).save(folder / f"{k:03d}.png")


def test_builtins_are_registered_as_entry_points():
    assert {"npy", "npz", "images", "python"} <= set(plugins.dataset_plugins())
    assert {"top1", "top5", "cosine", "sqnr", "max_abs_error"} <= set(plugins.metric_plugins())
    from importlib.metadata import entry_points

    assert {ep.name for ep in entry_points(group="tvm_sima.metrics")} >= {"top1", "sqnr"}


def test_npz_dataset_splits_into_model_batches_with_labels(fixtures_dir, digits):
    data = load_dataset(str(fixtures_dir / "digits_eval_nchw.npz"), NCHW)
    assert len(data) == 64 and data.batches[0].shape == (1, 1, 8, 8) and data.batches[0].dtype == np.float32
    np.testing.assert_array_equal(data.batches[3], digits[0][3:4])
    assert [int(x[0]) for x in data.labels[:12]] == [int(x) for x in digits[1]]


def test_image_folder_gives_the_same_arrays_and_class_labels(tmp_path, digits):
    images, labels = digits
    write_image_folder(tmp_path / "imgs", images, labels, size=8)
    classes = sorted({f"class_{x}" for x in labels})
    order = sorted(range(12), key=lambda k: (classes.index(f"class_{labels[k]}"), k))  # class by class
    want = np.round(images[order, 0] * 255) / 255
    for spec, inputs in ((str(tmp_path / "imgs"), NCHW), (f"images:{tmp_path / 'imgs'}", NHWC)):
        data = load_dataset(spec, inputs)
        assert len(data) == 12 and data.batches[0].shape == (1, *inputs[0].shape[1:])
        got = np.concatenate([b.reshape(1, 8, 8) for b in data.batches])
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert [classes[int(x[0])] for x in data.labels] == [f"class_{labels[k]}" for k in order]


def test_image_resize_short_side_then_centre_crop(tmp_path, digits):
    # a 16x32 picture: the digit upscaled x2 and padded with black on both sides
    image = np.round(digits[0][0, 0] * 255).astype(np.uint8)
    wide = np.zeros((16, 32), np.uint8)
    wide[:, 8:24] = np.kron(image, np.ones((2, 2), np.uint8))
    (tmp_path / "imgs").mkdir()
    Image.fromarray(wide, mode="L").save(tmp_path / "imgs" / "a.png")
    data = load_dataset(str(tmp_path / "imgs"), NCHW, {"resize": "8", "crop": "8x8"})
    assert data.labels is None and data.batches[0].shape == (1, 1, 8, 8)
    # 16x32 -> 8x16 (short side 8) -> the centre 8x8 is the digit again, up to the filter's blur
    assert np.abs(data.batches[0][0, 0] - image / 255).mean() < 0.08


def test_image_options_crop_and_normalize(tmp_path, digits):
    write_image_folder(tmp_path / "imgs", *digits, size=8)
    data = load_dataset(str(tmp_path / "imgs"), [InputSpec("x", (1, 1, 4, 4))],
                        {"crop": "4x4", "mean": "0.5", "std": "0.25"})
    first = np.round(digits[0][np.argsort([f"class_{x}" for x in digits[1]], kind="stable")[0], 0] * 255) / 255
    np.testing.assert_allclose(data.batches[0][0, 0], (first[2:6, 2:6] - 0.5) / 0.25, atol=1e-5)
    with pytest.raises(PluginError, match="unknown option"):
        load_dataset(str(tmp_path / "imgs"), NCHW, {"rezise": "8"})
    with pytest.raises(PluginError, match="smaller than the crop 16x16"):
        load_dataset(str(tmp_path / "imgs"), [InputSpec("x", (1, 1, 16, 16))], {"crop": "16x16"})


def test_python_callable_dataset(tmp_path):
    (tmp_path / "mydata.py").write_text(
        "import numpy as np\n"
        "def batches(count='3'):\n"
        "    xs = [np.full((1, 1, 8, 8), k, np.float32) for k in range(int(count))]\n"
        "    return xs, [np.array([k]) for k in range(int(count))]\n")
    data = load_dataset(f"{tmp_path / 'mydata.py'}:batches", NCHW, {"count": "4"})
    assert len(data) == 4 and float(data.batches[2][0, 0, 0, 0]) == 2.0 and int(data.labels[3][0]) == 3
    with pytest.raises(PluginError, match="has no function 'nope'"):
        load_dataset(f"{tmp_path / 'mydata.py'}:nope", NCHW)


@pytest.mark.parametrize("spec, message", [
    ("{t}/missing.npy", "data file {t}/missing.npy not found"),
    ("{t}/x.txt", "no dataset plugin reads this"),
    ("{t}/wrong.npy", "has shape (5, 3, 8, 8); the model takes (N, 1, 8, 8)"),
    ("{t}/one.npy", "fewer than one batch of 2"),
])
def test_dataset_errors_say_what_and_where(spec, message, tmp_path):
    (tmp_path / "x.txt").write_text("")
    np.save(tmp_path / "wrong.npy", np.zeros((5, 3, 8, 8), np.float32))
    np.save(tmp_path / "one.npy", np.zeros((1, 1, 8, 8), np.float32))
    inputs = [InputSpec("image", (2, 1, 8, 8))] if "one" in spec else NCHW
    with pytest.raises(PluginError) as err:
        load_dataset(spec.format(t=tmp_path), inputs)
    assert message.format(t=tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_builtin_metrics():
    ref = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    test = np.array([[0.2, 0.7, 0.1], [0.3, 0.6, 0.1], [0.1, 0.3, 0.6]])
    top1, top5 = get_metric("top1"), get_metric("top5")
    for m in (top1, top5):
        m.update(ref, test, None)
    assert top1.result() == pytest.approx(2 / 3) and top5.result() == 1.0  # agreement with float
    labelled = get_metric("top1")
    labelled.update(ref, test, np.array([1, 1, 0]))
    assert labelled.result() == pytest.approx(2 / 3)
    cos, sq = Cosine(), Sqnr()
    cos.update(ref, test)
    sq.update(ref, test)
    r, t = ref.ravel(), test.ravel()
    assert cos.result() == pytest.approx(r @ t / np.linalg.norm(r) / np.linalg.norm(t))
    assert sq.result() == pytest.approx(10 * np.log10((r @ r) / ((r - t) @ (r - t))))
    mx = get_metric("max_abs_error")
    mx.update(ref, test)
    assert mx.result() == pytest.approx(0.5)
    with pytest.raises(PluginError, match="unknown metric 'nope'; known: cosine"):
        get_metric("nope")


def test_register_metric_in_process():
    class Count:
        n = 0

        def update(self, reference, test, labels=None):
            self.n += len(reference)

        def result(self):
            return float(self.n)

    plugins.register_metric("count_test", Count)
    m = get_metric("count_test")
    m.update(np.zeros((4, 2)), np.zeros((4, 2)))
    assert m.result() == 4.0


def test_a_metric_from_an_installed_distribution_reaches_the_report(fixtures_dir, tmp_path):
    """A third-party package's entry point, found the way an installed one is (a dist-info on the path)."""
    site = tmp_path / "site"
    (site / "mymetrics-0.1.dist-info").mkdir(parents=True)
    (site / "mymetrics-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: mymetrics\nVersion: 0.1\n")
    (site / "mymetrics-0.1.dist-info" / "entry_points.txt").write_text(
        "[tvm_sima.metrics]\nmean_shift = mymetrics:MeanShift\n")
    (site / "mymetrics.py").write_text(
        "import numpy as np\n"
        "class MeanShift:\n"
        "    '''mean of (quantized - float) over every output value'''\n"
        "    def __init__(self):\n        self.total, self.count = 0.0, 0\n"
        "    def update(self, reference, test, labels=None):\n"
        "        self.total += float(np.sum(test - reference)); self.count += reference.size\n"
        "    def result(self):\n        return self.total / self.count\n")
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = tmp_path / "r"
    result = subprocess.run(
        [sys.executable, "-m", "tvm_sima.cli", "report", str(fixtures_dir / "digits_cnn_float.onnx"),
         "--calib", str(fixtures_dir / "digits_calib_nchw.npy"), "--eval", str(fixtures_dir / "digits_eval_nchw.npz"),
         "--output", str(out), "--mode", "continuous", "--metric", "mean_shift", "--metric", "sqnr"],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    scores = json.loads((out / "per_layer.json").read_text())["output_metrics"]
    assert set(scores) == {"mean_shift", "sqnr", "float_top1"}
    # quantization noise is small and centred: the mean shift is tiny against the 32 dB SQNR's noise
    assert abs(scores["mean_shift"]) < 0.2 and scores["sqnr"] > 25
    assert "mean_shift" in result.stdout


def test_a_broken_third_party_plugin_only_breaks_itself(tmp_path, monkeypatch):
    dist = tmp_path / "badplugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: badplugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[tvm_sima.metrics]\nbroken = no_such_module_xyz:Metric\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "broken" in plugins.metric_plugins()
    assert get_metric("sqnr").result() == float("inf")  # the others still load
    with pytest.raises(PluginError, match=r"plugin 'broken' \(no_such_module_xyz:Metric\) failed to load: "
                                          r"ModuleNotFoundError"):
        get_metric("broken")


def test_python_dataset_labels_per_sample_tuple_inputs_and_decorator_registration(tmp_path, monkeypatch):
    (tmp_path / "flat.py").write_text(
        "import numpy as np\n"
        "def batches():\n"
        "    return [np.full((2, 1, 8, 8), k, np.float32) for k in range(3)], np.arange(6)\n"
        "def wrong():\n"
        "    return [np.zeros((2, 1, 8, 8), np.float32)] * 3, np.arange(5)\n")
    data = load_dataset(f"{tmp_path / 'flat.py'}:batches", [("image", (2, 1, 8, 8), "float32")])
    assert [x.tolist() for x in data.labels] == [[0, 1], [2, 3], [4, 5]]  # one label per sample, split per batch
    with pytest.raises(PluginError, match="5 labels for 3 batches of 6 samples"):
        load_dataset(f"{tmp_path / 'flat.py'}:wrong", [("image", (2, 1, 8, 8), "float32")])

    monkeypatch.setattr(plugins, "_DATASETS", {})  # registered for this test only

    @plugins.register_dataset("constant_test")
    def constant(source, inputs, options):
        return plugins.Dataset([np.full(inputs[0].shape, float(source), np.float32)])

    assert constant.__name__ == "constant"  # the decorator returns what it decorates
    assert float(load_dataset("constant_test:0.5", NCHW).batches[0][0, 0, 0, 0]) == 0.5


def test_an_unknown_plugin_name_lists_the_known_ones(tmp_path):
    with pytest.raises(PluginError) as err:
        load_dataset("imagenet_xyz:val", NCHW)  # read as module:function, which cannot be imported
    assert "imagenet_xyz" in str(err.value) and "known: images, npy, npz, python" in str(err.value)
    with pytest.raises(PluginError, match="images give 1 .grayscale. or 3 .RGB. channels"):
        (tmp_path / "imgs").mkdir()
        load_dataset(str(tmp_path / "imgs"), [InputSpec("x", (1, 4, 8, 8))])
