"""Quantization configuration: ``with tvm_sima.qconfig(...): ...`` over a frozen, strict dataclass.

The shape is TVM Relay's old ``relay.quantize.qconfig`` (its field names are kept where they
exist, as aliases) and Zhouyi OPT's per-layer options. Unknown keys and bad values raise
``ValueError`` naming the field, with a "did you mean" hint. No TVM import here.

Defaults are the configuration we recommend: per-channel symmetric (restricted-range) int8
weights, per-tensor asymmetric int8 activations calibrated by a percentile (16-bit for the few a
depthwise conv reads and loses most of: ``depthwise_input_bits="auto"``), the SiMa shift-only
requantization. Relay's defaults (``global_scale`` calibration, power-of-two weight scales) are
available by name: ``qconfig(calibrate_mode="global_scale", global_scale=8.0, weight_scale="power2")``.

Per-layer overrides select layers by name (glob pattern), by layer-id range or by op type::

    qconfig(layer_overrides=[{"match": "name:*head*", "weight_bits": 16},
                             {"match": "id:0-2", "skip": True},
                             {"match": "op:relax.nn.dense", "requant_mode": "multiplier_shift"}])

and round-trip through a JSON file (:func:`write_layer_config` / :func:`read_layer_config`).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

from .math import Granularity, QScheme, RequantMode, RoundingMode

__all__ = [
    "QConfig",
    "LayerOverride",
    "LayerInfo",
    "qconfig",
    "current_qconfig",
    "QUANTIZE_METHODS",
    "CALIBRATION_STRATEGIES",
    "REQUANT_MODES",
    "PRESETS",
]

#: Granularity x scheme, as Zhouyi OPT names them.
QUANTIZE_METHODS = tuple(
    f"{granularity}_{scheme}"
    for granularity in ("per_tensor", "per_channel")
    for scheme in ("symmetric_restricted", "symmetric_full", "asymmetric")
)
#: Observers by name (tvm_sima.calibration registers one class for each).
CALIBRATION_STRATEGIES = (
    "global_scale", "extrema", "mean", "percentile", "nstd", "kl_divergence", "aciq_laplace", "aciq_gauss", "mse",
)
#: "shift": SiMa's weight-folded op (only a right shift); "multiplier_shift": TFLite style.
REQUANT_MODES = tuple(m.value for m in RequantMode)

#: Named presets (data): the settings each one turns on; options given beside ``preset=`` override them.
#: ``"default"``: the fields' defaults (fast). ``"accurate"``: the methods that measured better on
#: EfficientNet-Lite0 at a stated time cost (README, "Accuracy"): the output scale search and AdaRound.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "accurate": {"scale_search": True, "adaround": True},
}

# Relay-era names -> our field names.
_ALIASES = {
    "nbit_input": "input_bits",
    "nbit_weight": "weight_bits",
    "nbit_activation": "activation_bits",
    "calibrate_mode": "calibration_strategy_for_activation",
}
_DTYPE_ALIASES = {"dtype_input": "input_bits", "dtype_weight": "weight_bits", "dtype_activation": "activation_bits"}


def _split_method(method: str) -> tuple[Granularity, QScheme]:
    """``"per_channel_symmetric_restricted"`` -> ``(PER_CHANNEL, SYMMETRIC_RESTRICTED)``."""
    for granularity in Granularity:
        prefix = f"{granularity.value}_"
        if method.startswith(prefix):
            return granularity, QScheme.parse(method[len(prefix):])
    raise ValueError(f"qconfig: {method!r} is not one of {list(QUANTIZE_METHODS)}")


def _did_you_mean(key: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _require(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"qconfig: {name}={value!r} is invalid; expected {expected}")


def _one_of(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        hint = _did_you_mean(str(value), [str(c) for c in choices])
        raise ValueError(f"qconfig: {name}={value!r} is not one of {list(choices)}{hint}")


@dataclass(frozen=True)
class LayerOverride:
    """Settings applied to the layers that ``match`` selects.

    ``match``: ``"name:<glob>"`` (layer / tensor name), ``"source:<glob>"`` (the layer's name in the
    model file: ONNX node, TFLite output tensor), ``"id:<a>-<b>"`` or ``"id:<a>"`` (layer ids,
    inclusive), ``"op:<op name>"`` (e.g. ``relax.nn.conv2d``), ``"tensor:<glob>"`` (one activation
    tensor, ``add@3.output``: its bits and calibration; applied after its layer's overrides).
    ``settings``: QConfig fields, plus ``skip`` (keep the layer float; not for ``tensor:``).
    """

    match: str
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        kind, _, value = self.match.partition(":")
        _one_of("layer_overrides.match kind", kind, ("name", "source", "id", "op", "tensor"))
        if not value:
            raise ValueError(f"qconfig: layer override match {self.match!r} has nothing after '{kind}:'")
        if kind == "id":
            self.id_range()  # validates
        if kind == "tensor" and "skip" in self.settings:
            raise ValueError(f"qconfig: layer override {self.match!r}: 'skip' applies to layers (name:, id:, op:), "
                             "not to one tensor")
        module_wide = {"layer_overrides", "layer_config", "preset", "cross_layer_equalization", "depthwise_input_bits",
                       "depthwise_input_loss_db"}
        allowed = {f.name for f in fields(QConfig)} - module_wide | {"skip"} | set(_ALIASES)
        for key in self.settings:
            if key not in allowed:
                raise ValueError(f"qconfig: layer override {self.match!r} sets unknown field {key!r}"
                                 f"{_did_you_mean(key, sorted(allowed))}")

    def id_range(self) -> tuple[int, int]:
        """Inclusive ``(first, last)`` layer ids of an ``id:`` match."""
        text = self.match.partition(":")[2]
        first, _, last = text.partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise ValueError(f"qconfig: layer override {self.match!r}: use id:<first>-<last>") from None
        if lo < 0 or hi < lo:
            raise ValueError(f"qconfig: layer override {self.match!r}: need 0 <= first <= last")
        return lo, hi

    def selects(self, layer: "LayerInfo") -> bool:
        """True when this override applies to ``layer``."""
        kind, _, value = self.match.partition(":")
        if kind == "tensor":
            return False
        if kind == "name":
            return fnmatch.fnmatchcase(layer.name, value)
        if kind == "source":
            return bool(layer.source) and fnmatch.fnmatchcase(layer.source, value)
        if kind == "op":
            return layer.op == value
        lo, hi = self.id_range()
        return lo <= layer.id <= hi


@dataclass(frozen=True)
class LayerInfo:
    """A quantizable layer as the annotate pass numbers it.

    ``id`` counts every quantizable layer in program order; ``op_index`` counts the layers of
    the same op (the 0-th conv2d, ...), which is what Relay's ``skip_conv_layers`` indexes;
    ``source`` is the model's own name for the layer's node (ONNX node, TFLite output tensor;
    :mod:`tvm_sima.source_names`), ``""`` when the module carries none.
    """

    id: int
    name: str
    op: str
    op_index: int = -1
    source: str = ""


@dataclass(frozen=True)
class QConfig:
    """Every knob of :func:`tvm_sima.quantize` (see the module docstring for the defaults).

    ``input_bits`` is the width of the model's inputs, ``activation_bits`` of every other
    activation but those a depthwise conv reads, which get ``depthwise_input_bits``: 8, 16, or ``"auto"``
    (the default: 16 for those whose depthwise conv loses at least ``depthwise_input_loss_db`` of their
    8-bit SQNR on the first ``scale_search_samples`` calibration batches, else 8; 16 trades the int8-only
    NPU ops of those layers for accuracy; module-wide: :mod:`tvm_sima.passes.depthwise_bits`);
    ``bias_correction`` subtracts the mean
    error of rounded weights from each fused op's bias (calibration keeps per-channel input means);
    ``scale_search`` chooses each fused conv / dense layer's output scale within an octave above the
    calibrated one for the least layer output error, weights as the op stores them
    (:mod:`tvm_sima.passes.scale_search`; it measures on the first
    ``scale_search_samples`` calibration batches); ``cross_layer_equalization`` equalizes the weight
    ranges of conv -> (identity | relu) -> conv pairs in the float model first
    (:mod:`tvm_sima.passes.equalize`; a module-wide setting); ``adaround`` chooses each fused conv / dense
    weight's rounding, up or down on the grid the op stores, for the least layer output error
    (:mod:`tvm_sima.passes.adaround`, Nagel et al. 2020; its ``adaround_*`` hyper-parameters: steps, Adam's
    learning rate, the regulariser's weight and its exponent annealed from ``adaround_beta[0]`` to
    ``[1]`` after the ``adaround_warm_start`` fraction; on the scale search's samples;
    ``adaround_quantized_input``: a second pass on each layer's input as the first pass's program computes it);
    ``round_for_shift`` must stay True (the ops round their shifts); ``lut_items_in_bits`` is reserved for
    interpolated tables of 16-bit inputs (every table is exact today: 256 entries for 8-bit inputs, 65536
    for 16-bit ones).

    ``preset`` names a set of settings (:data:`PRESETS`; ``qconfig(preset="accurate")``), applied by
    :func:`qconfig` / :meth:`replace` before the other options given with it.

    Relay names are accepted by :func:`qconfig` and readable as properties: ``nbit_input``,
    ``nbit_weight``, ``nbit_activation``, ``dtype_input``, ``dtype_weight``, ``dtype_activation``,
    ``calibrate_mode``.
    """

    input_bits: int = 8
    weight_bits: int = 8
    activation_bits: int = 8
    depthwise_input_bits: Union[int, str] = "auto"
    depthwise_input_loss_db: float = 10.0
    bias_bits: int = 32
    quantize_method_for_weight: str = "per_channel_symmetric_restricted"
    quantize_method_for_activation: str = "per_tensor_asymmetric"
    calibration_strategy_for_weight: str = "extrema"
    calibration_strategy_for_activation: str = "percentile"
    percentile: float = 99.99
    nstd: float = 3.0
    kl_top_n: int = 1
    running_statistic_momentum: float = 0.9
    histc_bins: int = 2048
    global_scale: float = 8.0
    weight_scale: str = "max"
    skip_conv_layers: tuple[int, ...] = ()
    skip_dense_layer: bool = False
    do_simulation: bool = False
    round_for_shift: bool = True
    debug_enabled_ops: Optional[tuple[str, ...]] = None
    rounding: str = "half_up"
    calibrate_chunk_by: int = -1
    lut_items_in_bits: int = 8
    requant_mode: str = "shift"
    multiplier_bits: int = 31
    force_shift_positive: bool = False
    trim_infinity_before_statistic: bool = False
    bias_correction: bool = True
    scale_search: bool = False
    cross_layer_equalization: bool = False
    scale_search_samples: int = 4
    adaround: bool = False
    adaround_iterations: int = 1000
    adaround_learning_rate: float = 0.01
    adaround_regularization: float = 0.01
    adaround_beta: tuple[float, float] = (20.0, 2.0)
    adaround_warm_start: float = 0.2
    adaround_quantized_input: bool = False
    rescue_collapsed_tensors: bool = True
    mixed_precision_sqnr_db: Optional[float] = None
    mixed_precision_max_macs: float = 1.0
    mixed_precision_samples: int = 8
    preset: str = "default"
    layer_overrides: tuple[LayerOverride, ...] = ()
    layer_config: Optional[str] = None

    def __post_init__(self) -> None:
        _one_of("preset", self.preset, tuple(PRESETS))
        _one_of("input_bits", self.input_bits, (8, 16))
        _require(isinstance(self.weight_bits, int) and 2 <= self.weight_bits <= 16, "weight_bits",
                 self.weight_bits, "an int in 2..16")
        _one_of("activation_bits", self.activation_bits, (8, 16))
        _one_of("depthwise_input_bits", self.depthwise_input_bits, (8, 16, "auto"))
        _require(isinstance(self.depthwise_input_loss_db, (int, float)) and self.depthwise_input_loss_db >= 0,
                 "depthwise_input_loss_db", self.depthwise_input_loss_db, "a loss in dB >= 0")
        _one_of("bias_bits", self.bias_bits, (32, 48))
        if self.activation_bits == 16 and self.bias_bits == 32:
            raise ValueError("qconfig: activation_bits=16 needs bias_bits=48 (the accumulator of 16-bit data)")
        _one_of("quantize_method_for_weight", self.quantize_method_for_weight, QUANTIZE_METHODS)
        _one_of("quantize_method_for_activation", self.quantize_method_for_activation, QUANTIZE_METHODS)
        _one_of("calibration_strategy_for_weight", self.calibration_strategy_for_weight, CALIBRATION_STRATEGIES)
        _one_of("calibration_strategy_for_activation", self.calibration_strategy_for_activation,
                CALIBRATION_STRATEGIES)
        _require(0.0 < self.percentile <= 100.0, "percentile", self.percentile, "a value in (0, 100]")
        _require(self.nstd > 0, "nstd", self.nstd, "a positive number of standard deviations")
        _require(isinstance(self.kl_top_n, int) and self.kl_top_n >= 1, "kl_top_n", self.kl_top_n, "an int >= 1")
        _require(0.0 <= self.running_statistic_momentum < 1.0, "running_statistic_momentum",
                 self.running_statistic_momentum, "a value in [0, 1)")
        _require(isinstance(self.histc_bins, int) and self.histc_bins >= 16, "histc_bins", self.histc_bins,
                 "an int >= 16")
        _require(self.global_scale > 0, "global_scale", self.global_scale, "a positive number")
        _one_of("weight_scale", self.weight_scale, ("max", "power2"))
        RoundingMode.parse(self.rounding)
        _require(isinstance(self.calibrate_chunk_by, int) and (self.calibrate_chunk_by == -1
                                                               or self.calibrate_chunk_by > 0),
                 "calibrate_chunk_by", self.calibrate_chunk_by, "-1 (all at once) or a positive int")
        _require(isinstance(self.lut_items_in_bits, int) and 1 <= self.lut_items_in_bits <= 16,
                 "lut_items_in_bits", self.lut_items_in_bits, "an int in 1..16")
        _one_of("requant_mode", self.requant_mode, REQUANT_MODES)
        _require(isinstance(self.multiplier_bits, int) and 1 <= self.multiplier_bits <= 31, "multiplier_bits",
                 self.multiplier_bits, "an int in 1..31")
        _require(isinstance(self.scale_search, bool), "scale_search", self.scale_search, "True or False")
        _require(isinstance(self.cross_layer_equalization, bool), "cross_layer_equalization",
                 self.cross_layer_equalization, "True or False")
        _require(isinstance(self.scale_search_samples, int) and self.scale_search_samples >= 1,
                 "scale_search_samples", self.scale_search_samples, "an int >= 1 (calibration batches)")
        self._check_adaround()
        _require(isinstance(self.rescue_collapsed_tensors, bool), "rescue_collapsed_tensors",
                 self.rescue_collapsed_tensors, "True or False")
        _require(self.mixed_precision_sqnr_db is None or isinstance(self.mixed_precision_sqnr_db, (int, float)),
                 "mixed_precision_sqnr_db", self.mixed_precision_sqnr_db, "None or an output SQNR in dB")
        _require(isinstance(self.mixed_precision_max_macs, (int, float)) and 0 <= self.mixed_precision_max_macs <= 1,
                 "mixed_precision_max_macs", self.mixed_precision_max_macs, "a fraction of the MACs in [0, 1]")
        _require(isinstance(self.mixed_precision_samples, int) and self.mixed_precision_samples >= 1,
                 "mixed_precision_samples", self.mixed_precision_samples, "an int >= 1 (calibration batches)")
        _require(self.layer_config is None or isinstance(self.layer_config, (str, os.PathLike)), "layer_config",
                 self.layer_config, "a path to a per-layer JSON file")
        if self.layer_config is not None:
            object.__setattr__(self, "layer_config", os.fspath(self.layer_config))
        object.__setattr__(self, "skip_conv_layers", tuple(int(i) for i in self.skip_conv_layers))
        if self.debug_enabled_ops is not None:
            object.__setattr__(self, "debug_enabled_ops", tuple(self.debug_enabled_ops))
        object.__setattr__(self, "layer_overrides", tuple(
            o if isinstance(o, LayerOverride) else _override_from_dict(o) for o in self.layer_overrides))

    def _check_adaround(self) -> None:
        _require(isinstance(self.adaround, bool), "adaround", self.adaround, "True or False")
        _require(isinstance(self.adaround_quantized_input, bool), "adaround_quantized_input",
                 self.adaround_quantized_input, "True or False")
        _require(isinstance(self.adaround_iterations, int) and self.adaround_iterations >= 1, "adaround_iterations",
                 self.adaround_iterations, "an int >= 1 (optimiser steps per layer)")
        for name in ("adaround_learning_rate", "adaround_regularization"):
            _require(isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 0, name,
                     getattr(self, name), "a positive number")
        beta = tuple(self.adaround_beta) if isinstance(self.adaround_beta, (list, tuple)) else ()
        _require(len(beta) == 2 and all(isinstance(b, (int, float)) and b > 0 for b in beta), "adaround_beta",
                 self.adaround_beta, "(start, end): two positive exponents, annealed from start to end")
        object.__setattr__(self, "adaround_beta", tuple(float(b) for b in beta))
        _require(isinstance(self.adaround_warm_start, (int, float)) and 0 <= self.adaround_warm_start < 1,
                 "adaround_warm_start", self.adaround_warm_start, "a fraction of the iterations in [0, 1)")

    # Relay-era names, read-only.
    nbit_input = property(lambda self: self.input_bits)
    nbit_weight = property(lambda self: self.weight_bits)
    nbit_activation = property(lambda self: self.activation_bits)
    dtype_input = property(lambda self: f"int{self.input_bits}")
    dtype_weight = property(lambda self: f"int{self.weight_bits}")
    dtype_activation = property(lambda self: f"int{self.activation_bits}")
    calibrate_mode = property(lambda self: self.calibration_strategy_for_activation)

    # The string fields, parsed (the strings stay the file format).
    @property
    def weight_granularity(self) -> Granularity:
        """Per-tensor or per-channel weights (from :attr:`quantize_method_for_weight`)."""
        return _split_method(self.quantize_method_for_weight)[0]

    @property
    def weight_scheme(self) -> QScheme:
        """The weights' scheme (from :attr:`quantize_method_for_weight`)."""
        return _split_method(self.quantize_method_for_weight)[1]

    @property
    def activation_granularity(self) -> Granularity:
        """Per-tensor or per-channel activations (from :attr:`quantize_method_for_activation`)."""
        return _split_method(self.quantize_method_for_activation)[0]

    @property
    def activation_scheme(self) -> QScheme:
        """The activations' scheme (from :attr:`quantize_method_for_activation`)."""
        return _split_method(self.quantize_method_for_activation)[1]

    @property
    def rounding_mode(self) -> RoundingMode:
        """:attr:`rounding` as a :class:`~tvm_sima.math.RoundingMode` (TVM's names accepted)."""
        return RoundingMode.parse(self.rounding)

    @property
    def requant(self) -> RequantMode:
        """:attr:`requant_mode` as a :class:`~tvm_sima.math.RequantMode`."""
        return RequantMode.parse(self.requant_mode)

    def replace(self, **changes: Any) -> "QConfig":
        """A copy with ``changes`` (same rules as :func:`qconfig`): a ``preset`` brings its settings
        (:data:`PRESETS`), and the other changes override them."""
        canonical = _canonical(changes)
        if "preset" in canonical:
            _one_of("preset", canonical["preset"], tuple(PRESETS))
            canonical = {**PRESETS[canonical["preset"]], **canonical}
        return dataclasses.replace(self, **canonical)

    def for_layer(self, layer: LayerInfo) -> tuple["QConfig", bool]:
        """The configuration of one layer after its overrides, and whether it is skipped."""
        conv_index = layer.op_index if layer.op_index >= 0 else layer.id
        skip = layer.op.endswith("conv2d") and conv_index in self.skip_conv_layers
        skip = skip or (self.skip_dense_layer and layer.op.endswith(("dense", "matmul")))
        config = self
        for override in self.layer_overrides:
            if override.selects(layer):
                settings = dict(override.settings)
                skip = bool(settings.pop("skip", skip))
                config = dataclasses.replace(config, **_canonical(settings))
        return config, skip

    def for_tensor(self, tensor: str, layers: Optional[Mapping[str, LayerInfo]] = None) -> "QConfig":
        """The configuration of one activation tensor: that of the layer owning it (``<layer>.<role>``, looked up
        in ``layers`` by name), then the ``tensor:`` overrides matching its name. Calibration, realize and the
        simulated graph all ask this."""
        layer = (layers or {}).get(tensor.rsplit(".", 1)[0])
        config = self.for_layer(layer)[0] if layer is not None else self
        for override in self.layer_overrides:
            kind, _, pattern = override.match.partition(":")
            if kind == "tensor" and fnmatch.fnmatchcase(tensor, pattern):
                config = dataclasses.replace(config, **_canonical(dict(override.settings)))
        return config

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, overrides as ``{"match": ..., **settings}``."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "layer_overrides"}
        out["skip_conv_layers"] = list(self.skip_conv_layers)
        out["debug_enabled_ops"] = None if self.debug_enabled_ops is None else list(self.debug_enabled_ops)
        out["layer_overrides"] = [{"match": o.match, **o.settings} for o in self.layer_overrides]
        return out


def _override_from_dict(item: Any) -> LayerOverride:
    if not isinstance(item, dict) or "match" not in item:
        raise ValueError(f"qconfig: a layer override must be a dict with a 'match' key, got {item!r}")
    settings = {k: v for k, v in item.items() if k != "match"}
    return LayerOverride(str(item["match"]), settings)


def _canonical(values: dict[str, Any]) -> dict[str, Any]:
    """Map Relay names onto ours; reject unknown keys and contradictory duplicates."""
    known = {f.name for f in fields(QConfig)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in _DTYPE_ALIASES:
            _require(isinstance(value, str) and value.startswith("int") and value[3:].isdigit(), key, value,
                     "a signed integer dtype such as 'int8'")
            target, value = _DTYPE_ALIASES[key], int(value[3:])
        elif key in _ALIASES:
            target = _ALIASES[key]
        elif key in known:
            target = key
        else:
            choices = sorted(known | set(_ALIASES) | set(_DTYPE_ALIASES))
            raise ValueError(f"qconfig: unknown option {key!r}{_did_you_mean(key, choices)}")
        if target in out and out[target] != value:
            raise ValueError(f"qconfig: {key}={value!r} contradicts {target}={out[target]!r}")
        out[target] = value
    return out


_STATE = threading.local()


def current_qconfig() -> QConfig:
    """The innermost active :func:`qconfig`, or the defaults."""
    stack = getattr(_STATE, "stack", None)
    return stack[-1] if stack else QConfig()


@contextmanager
def qconfig(**options: Any) -> Iterator[QConfig]:
    """Activate a configuration for the ``with`` block (nested blocks inherit and override).

    Raises
    ------
    ValueError
        Unknown option (with a "did you mean" hint), bad value, contradicting aliases.
    """
    config = current_qconfig().replace(**options)
    stack = getattr(_STATE, "stack", None)
    if stack is None:
        stack = _STATE.stack = []
    stack.append(config)
    try:
        yield config
    finally:
        stack.pop()
