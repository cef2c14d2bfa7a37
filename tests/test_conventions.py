"""Conventions in types: the parsed config enums (Granularity, QScheme, RoundingMode, RequantMode)."""

from __future__ import annotations

import pytest

from tvm_sima.config import QUANTIZE_METHODS, REQUANT_MODES, QConfig, qconfig
from tvm_sima.math import Granularity, QScheme, RequantMode, RoundingMode


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
