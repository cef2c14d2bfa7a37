"""The command line takes ``.pt2`` files (``torch.export.save``): quantize a float one, convert a PT2E one."""

from __future__ import annotations

import json

import numpy as np
import torch
import tvm
from helpers.torch_models import images, pt2e_quantized, small_net
from tvm import relax

from tvm_sima.cli import main

EXAMPLE = torch.zeros(1, 3, 16, 16)


def _run(library, x: np.ndarray) -> np.ndarray:
    return relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def test_quantize_a_float_pt2_file(tmp_path, capsys):
    model = small_net()
    torch.export.save(torch.export.export(model, (EXAMPLE,)), tmp_path / "net.pt2")
    np.save(tmp_path / "calib.npy", np.concatenate(images(6, seed=0)))
    assert main(["inspect", str(tmp_path / "net.pt2")]) == 0
    assert "features.0.conv" in capsys.readouterr().out  # the module's own names
    assert main(["quantize", str(tmp_path / "net.pt2"), "--calib", str(tmp_path / "calib.npy"),
                 "--output", str(tmp_path / "q")]) == 0
    layers = json.loads((tmp_path / "q" / "layers.json").read_text())["layers"]
    assert [r["source"] for r in layers] == ["stem", "features.0.conv", "features.1.conv", "fc"]
    x = images(1, seed=1)[0]
    want = model(torch.from_numpy(x)).detach().numpy()
    got = _run(tmp_path / "q" / "model.so", x)
    assert 10 * np.log10((want**2).sum() / ((want - got) ** 2).sum()) > 25


def test_convert_a_pt2e_pt2_file(tmp_path, capsys):
    pt2e = pt2e_quantized(small_net(), EXAMPLE, images(4, seed=2))
    torch.export.save(torch.export.export(pt2e, (EXAMPLE,)), tmp_path / "q.pt2")
    assert main(["convert", str(tmp_path / "q.pt2"), "--output", str(tmp_path / "c")]) == 0
    assert "9 chain(s) converted" in capsys.readouterr().out
    report = json.loads((tmp_path / "c" / "convert_report.json").read_text())
    assert report["unconverted"] == [] and len(report["converted"]) == 9
    x = images(1, seed=3)[0]
    with torch.no_grad():
        want = pt2e(torch.from_numpy(x)).numpy()
    assert np.abs(_run(tmp_path / "c" / "model.so", x) - want).max() < 0.05 * np.abs(want).max()
