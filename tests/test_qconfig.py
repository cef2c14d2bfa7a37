"""qconfig: strict, typed, nested, Relay names kept, per-layer overrides and their JSON."""

from __future__ import annotations

import json
import sys

import pytest

import tvm_sima
from tvm_sima.config import LayerInfo, QConfig, current_qconfig, qconfig
from tvm_sima.layer_config import read_layer_config, write_layer_config

CONV = LayerInfo(0, "stem.conv", "relax.nn.conv2d")
HEAD = LayerInfo(7, "head.fc", "relax.matmul")


def test_defaults_are_the_recommended_configuration():
    cfg = current_qconfig()
    assert cfg == QConfig()
    assert cfg.quantize_method_for_weight == "per_channel_symmetric_restricted"
    assert cfg.calibration_strategy_for_activation == "percentile" and cfg.requant_mode == "shift"
    assert (cfg.nbit_weight, cfg.dtype_activation, cfg.calibrate_mode) == (8, "int8", "percentile")


def test_relay_names_and_nesting():
    with qconfig(nbit_weight=4, calibrate_mode="global_scale", global_scale=4.0, weight_scale="power2") as outer:
        assert outer.weight_bits == 4 and outer.calibration_strategy_for_activation == "global_scale"
        with qconfig(dtype_activation="int16", bias_bits=48) as inner:
            assert inner.activation_bits == 16 and inner.weight_bits == 4  # inherits
            assert tvm_sima.current_qconfig() is inner
        assert current_qconfig() is outer
    assert current_qconfig() == QConfig()


def test_config_is_frozen():
    with pytest.raises(Exception, match="cannot assign"):
        QConfig().weight_bits = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"weigth_bits": 8}, "unknown option 'weigth_bits'; did you mean 'weight_bits'"),
        ({"calibrate_mod": "kl_divergence"}, "did you mean 'calibrate_mode'"),
        ({"weight_bits": 1}, "weight_bits=1 is invalid; expected an int in 2..16"),
        ({"activation_bits": 12}, r"activation_bits=12 is not one of \[8, 16\]"),
        ({"activation_bits": 16}, "activation_bits=16 needs bias_bits=48"),
        ({"calibration_strategy_for_activation": "kl_divergance"}, "did you mean 'kl_divergence'"),
        ({"quantize_method_for_weight": "per_channel_symetric"}, "is not one of"),
        ({"requant_mode": "multiplier"}, "did you mean 'multiplier_shift'"),
        ({"rounding": "nearest"}, "rounding='nearest' is not a rounding mode"),
        ({"percentile": 101}, r"percentile=101 is invalid; expected a value in \(0, 100\]"),
        ({"nbit_weight": 8, "weight_bits": 4}, "contradicts"),
        ({"dtype_weight": "uint8"}, "dtype_weight='uint8' is invalid"),
        ({"layer_overrides": [{"match": "layer:conv", "weight_bits": 4}]}, "match kind"),
        ({"layer_overrides": [{"match": "id:5-2"}]}, "need 0 <= first <= last"),
        ({"layer_overrides": [{"match": "op:relax.nn.conv2d", "wieght_bits": 4}]}, "did you mean 'weight_bits'"),
        ({"layer_overrides": [{"weight_bits": 4}]}, "must be a dict with a 'match' key"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        with qconfig(**options):
            pass


def test_layer_overrides_by_name_id_and_op():
    with qconfig(layer_overrides=[
        {"match": "op:relax.matmul", "requant_mode": "multiplier_shift"},
        {"match": "name:head.*", "weight_bits": 16, "activation_bits": 16, "bias_bits": 48},
        {"match": "id:0-3", "skip": True},
    ], skip_dense_layer=False) as cfg:
        head, head_skip = cfg.for_layer(HEAD)
        assert (head.requant_mode, head.weight_bits, head.activation_bits, head_skip) == (
            "multiplier_shift", 16, 16, False)
        conv, conv_skip = cfg.for_layer(CONV)
        assert conv_skip and conv.weight_bits == 8
    cfg = QConfig(skip_conv_layers=(0,), skip_dense_layer=True)
    assert cfg.for_layer(CONV)[1] and cfg.for_layer(HEAD)[1]
    # Relay's skip_conv_layers counts conv layers only: the 2nd conv of the graph is conv 1.
    second_conv = LayerInfo(5, "block.conv", "relax.nn.conv2d", op_index=1)
    assert QConfig(skip_conv_layers=(1,)).for_layer(second_conv)[1]
    assert not QConfig(skip_conv_layers=(5,)).for_layer(second_conv)[1]


def test_tensor_overrides_apply_after_the_layer_and_only_to_their_tensors():
    cfg = QConfig(layer_overrides=[{"match": "name:head.*", "activation_bits": 16, "bias_bits": 48},
                                   {"match": "tensor:add@*.output", "activation_bits": 16, "bias_bits": 48},
                                   {"match": "tensor:head.fc.input", "activation_bits": 8, "bias_bits": 32}])
    layers = {HEAD.name: HEAD, CONV.name: CONV}
    assert cfg.for_tensor("add@3.output", layers).activation_bits == 16  # no layer: the global config, then its own
    assert cfg.for_tensor(f"{CONV.name}.input", layers).activation_bits == 8
    assert cfg.for_tensor(f"{HEAD.name}.output", layers).activation_bits == 16  # its layer's
    assert cfg.for_tensor("head.fc.input", layers).activation_bits == 8  # its own, after its layer's
    assert cfg.for_layer(HEAD)[0].activation_bits == 16  # a tensor: override never selects a layer
    with pytest.raises(ValueError, match="'skip' applies to layers"):
        QConfig(layer_overrides=[{"match": "tensor:x.input", "skip": True}])


def test_layer_json_round_trip(tmp_path):
    path = tmp_path / "layers.json"
    layers = [CONV, LayerInfo(1, "block[1]*", "relax.nn.conv2d"), HEAD]
    write_layer_config(path, layers, QConfig(layer_overrides=[{"match": "id:1", "weight_bits": 6}]))
    payload = json.loads(path.read_text())
    assert [row["settings"]["weight_bits"] for row in payload["layers"]] == [8, 6, 8]
    payload["layers"][2]["settings"]["weight_bits"] = 4  # the user edits the template
    payload["layers"][0]["skip"] = True
    path.write_text(json.dumps(payload))
    cfg = QConfig(layer_overrides=read_layer_config(path))
    assert cfg.for_layer(HEAD)[0].weight_bits == 4
    assert cfg.for_layer(CONV)[1] is True
    assert cfg.for_layer(layers[1])[0].weight_bits == 6  # a name with glob characters matches itself
    assert cfg.for_layer(LayerInfo(9, "block11", "relax.nn.conv2d"))[0].weight_bits == 8


def test_bad_layer_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_layer_config(bad)
    bad.write_text(json.dumps({"version": 99, "layers": []}))
    with pytest.raises(ValueError, match="layer config version 99; this tvm-sima reads version 1"):
        read_layer_config(bad)
    bad.write_text(json.dumps({"version": 1, "layers": [{"name": "x", "settings": {"bits": 4}}]}))
    with pytest.raises(ValueError, match=r"layers\[0\] \(x\): .*unknown field 'bits'"):
        read_layer_config(bad)
    with pytest.raises(FileNotFoundError):
        read_layer_config(tmp_path / "missing.json")


def test_to_dict_is_json_and_no_tvm_import():
    json.dumps(QConfig(layer_overrides=[{"match": "op:relax.nn.conv2d", "weight_bits": 4}]).to_dict())
    import subprocess

    code = "import sys, tvm_sima.config; assert 'tvm' not in sys.modules, 'config imported tvm'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_top_level_names_stay_callable_after_submodule_imports():
    import tvm_sima.config  # noqa: F401
    import tvm_sima.targets  # noqa: F401

    assert callable(tvm_sima.qconfig) and callable(tvm_sima.target) and callable(tvm_sima.load_model)


def test_a_preset_brings_its_settings_and_explicit_options_override_them():
    assert not QConfig().scale_search and QConfig().preset == "default"
    with qconfig(preset="accurate") as cfg:
        assert cfg.scale_search and cfg.adaround and cfg.preset == "accurate"
        assert cfg.to_dict()["preset"] == "accurate"
    with qconfig(preset="accurate", scale_search=False) as cfg:
        assert not cfg.scale_search
    with pytest.raises(ValueError, match="preset='acurate' is not one of .*did you mean 'accurate'"):
        with qconfig(preset="acurate"):
            pass
    with pytest.raises(ValueError, match="unknown field 'preset'"):
        QConfig(layer_overrides=[{"match": "op:relax.nn.conv2d", "preset": "accurate"}])
