"""Conventions in types: the parsed config enums, and one reader of qparams from op attributes."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_sima.config import QUANTIZE_METHODS, REQUANT_MODES, QConfig, qconfig
from tvm_sima.math import Granularity, QParams, QScheme, RequantMode, RoundingMode


@pytest.mark.parametrize("method", QUANTIZE_METHODS)
def test_every_quantize_method_parses_into_granularity_and_scheme_and_back(method):
    cfg = QConfig(quantize_method_for_weight=method, quantize_method_for_activation=method)
    for granularity, scheme in ((cfg.weight_granularity, cfg.weight_scheme),
                                (cfg.activation_granularity, cfg.activation_scheme)):
        assert isinstance(granularity, Granularity) and isinstance(scheme, QScheme)
        assert f"{granularity.value}_{scheme.value}" == method
    assert cfg.to_dict()["quantize_method_for_weight"] == method  # the file format stays the string


def test_defaults_parse_to_the_recommended_enums():
    cfg = QConfig()
    assert (cfg.weight_granularity, cfg.weight_scheme) == (Granularity.PER_CHANNEL, QScheme.SYMMETRIC_RESTRICTED)
    assert (cfg.activation_granularity, cfg.activation_scheme) == (Granularity.PER_TENSOR, QScheme.ASYMMETRIC)
    assert cfg.rounding_mode is RoundingMode.HALF_UP and cfg.requant is RequantMode.SHIFT


@pytest.mark.parametrize("mode", REQUANT_MODES)
def test_every_requant_mode_round_trips(mode):
    cfg = QConfig(requant_mode=mode)
    assert cfg.requant is RequantMode(mode) and cfg.requant.value == mode
    assert cfg.to_dict()["requant_mode"] == mode


@pytest.mark.parametrize("rounding, expected", [*((m.value, m) for m in RoundingMode),
                                                ("UPWARD", RoundingMode.HALF_UP),
                                                ("TONEAREST", RoundingMode.HALF_AWAY_FROM_ZERO)])
def test_every_rounding_string_round_trips(rounding, expected):
    cfg = QConfig(rounding=rounding)
    assert cfg.rounding_mode is expected
    assert cfg.to_dict()["rounding"] == rounding  # written back as given


@pytest.mark.parametrize("options, message", [
    ({"quantize_method_for_weight": "per_layer_full"}, "quantize_method_for_weight='per_layer_full' is not one of"),
    ({"quantize_method_for_activation": "per_tensor_symetric_full"}, "did you mean 'per_tensor_symmetric_full'"),
    ({"requant_mode": "tflite"}, r"requant_mode='tflite' is not one of \['shift', 'multiplier_shift'\]"),
    ({"rounding": "nearest"}, "rounding='nearest' is not a rounding mode"),
])
def test_a_bad_string_fails_when_the_config_is_made(options, message):
    with pytest.raises(ValueError, match=message):
        with qconfig(**options):
            pass


def test_granularity_and_requant_mode_parse():
    assert Granularity.parse("per_channel") is Granularity.PER_CHANNEL
    assert Granularity.parse(Granularity.PER_TENSOR) is Granularity.PER_TENSOR
    with pytest.raises(ValueError, match="granularity='per_layer' .* per_tensor, per_channel"):
        Granularity.parse("per_layer")
    assert RequantMode.parse("tflite") is RequantMode.MULTIPLIER_SHIFT  # the converter's name
    assert RequantMode.parse("multiplier_shift") is RequantMode.MULTIPLIER_SHIFT
    assert RequantMode.parse(RequantMode.SHIFT) is RequantMode.SHIFT
    with pytest.raises(ValueError, match="requant_mode='fold' .* shift, multiplier_shift, tflite"):
        RequantMode.parse("fold")


def test_enums_are_strings_so_old_comparisons_hold():
    assert RequantMode.SHIFT == "shift" and Granularity.PER_CHANNEL == "per_channel"


# --------------------------------------------------------------------------- qparams_from_attrs

@pytest.mark.parametrize("qp", [
    QParams(0.05, -3, "int8"),
    QParams(0.5, 128, "uint8"),
    QParams(0.001, 0, "int16"),
    QParams([0.1, 0.2, 0.4], [0, 0, 0], "int8", axis=0),
    QParams(np.array([0.5, 0.25]), np.array([1, -2]), "int8", axis=3),
], ids=repr)
def test_qparams_from_attrs_inverts_qparams_attrs_on_real_ops(qp):
    from tvm import relax

    import tvm_sima.ops as so

    assert so.qparams_from_attrs(so.qparams_attrs(qp)) == qp
    shape = [2, 3, 4, 5] if qp.axis == 3 or not qp.per_channel else [3, 2, 4, 5]
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    q = relax.Var("q", relax.TensorType(shape, qp.dtype.container.name))
    for call in (so.quantize(x, qp), so.dequantize(q, qp), so.quantize_info(x, qp, name="t")):
        assert so.qparams_from_attrs(call.attrs) == qp, call.op.name


def test_qparams_from_attrs_reads_what_the_converter_reads(fixtures_dir):
    import tvm_sima
    from tvm_sima.converter.chains import dequantized
    from tvm_sima.graph import GraphIndex, op_name
    from tvm_sima.ops import qparams_from_attrs

    mod, _ = tvm_sima.load_model(fixtures_dir / "digits_int8.tflite")
    index = GraphIndex(mod["main"])
    calls = [v for v in index.producer.values() if op_name(v) in ("sima.quantize", "sima.dequantize")]
    assert any(len(c.attrs["scale"]) > 1 for c in calls)  # guard: per-channel weights are among them
    for call in calls:
        assert qparams_from_attrs(call.attrs).per_channel == (len(call.attrs["scale"]) > 1)
        assert [float(s) for s in call.attrs["scale"]] == list(np.atleast_1d(qparams_from_attrs(call.attrs).scale))
    for var, value in index.producer.items():
        if op_name(value) == "sima.dequantize":
            source, qp = dequantized(index, var)
            assert source.same_as(value.args[0]) and qp == qparams_from_attrs(value.attrs)


def test_the_tflite_qdq_registry_covers_every_supported_op():
    from tvm_sima.frontends import tflite_qdq

    evaluated_or_folded = {"SHAPE", "PACK", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"}
    assert set(tflite_qdq.QDQ_OPS) == set(tflite_qdq._HANDLERS) | evaluated_or_folded


# --------------------------------------------------------------------------- module passes

def test_annotate_and_realize_passes_compose_with_tvm_passes(fixtures_dir):
    import tvm
    from tvm import relax

    import tvm_sima
    from tvm_sima.passes import Annotate, Realize, annotate, calibrate
    from tvm_sima.passes.realize import realize

    mod, params = tvm_sima.load_model(fixtures_dir / "digits_cnn_float.tflite")
    mod = tvm_sima.bind_params(mod, params)
    cfg = QConfig()
    annotate_pass = Annotate(cfg)
    assert isinstance(annotate_pass, tvm.transform.Pass) and annotate_pass.layers is None
    amod = tvm.transform.Sequential([relax.transform.CanonicalizeBindings(), annotate_pass])(mod)
    expected, layers = annotate(relax.transform.CanonicalizeBindings()(mod), cfg)
    tvm.ir.assert_structural_equal(amod, expected)
    assert annotate_pass.layers == layers and len(layers) > 0

    digits = np.load(fixtures_dir / "digits_split.npz")["calib"][:4]
    observers = calibrate(amod, [(x / 16.0).astype("float32")[None] for x in digits], cfg, layers=layers)
    realize_pass = Realize(observers, cfg, layers)
    qmod = tvm.transform.Sequential([realize_pass])(amod)
    expected_q, report = realize(amod, observers, cfg, layers)
    tvm.ir.assert_structural_equal(qmod, expected_q)
    assert realize_pass.report.to_dict() == report.to_dict() and report.fused


@pytest.mark.parametrize("mode", ["tflite", "shift"])
def test_the_convert_pass_is_convert(fixtures_dir, mode):
    import tvm
    from tvm import relax

    import tvm_sima
    from tvm_sima.passes import Convert

    mod, _ = tvm_sima.load_model(fixtures_dir / "digits_int8.tflite")
    convert_pass = Convert(mode)
    converted = tvm.transform.Sequential([relax.transform.CanonicalizeBindings(), convert_pass])(mod)
    expected, report = tvm_sima.convert(relax.transform.CanonicalizeBindings()(mod), mode)
    tvm.ir.assert_structural_equal(converted, expected)
    assert convert_pass.report.to_dict() == report.to_dict() and report.converted  # guard: it did convert
