"""The activations depthwise convs read: 8- or 16-bit codes (``qconfig(depthwise_input_bits=8 | 16 | "auto")``).

A depthwise conv sums a few taps of one channel, and the taps of trained depthwise kernels largely
cancel (edge-like filters), so its output can keep little of its input's signal but all of its input's
rounding noise. In MobileNet-style networks these tensors own most of the 8-bit activation noise.
Widening one gives it 16-bit codes, with the tensors it takes its grid from (back through reshapes,
pads, max pools, clips to the op that writes the codes), and the layers reading them a 48-bit
accumulator (the NPU's 16-bit mode, ``converter.rules.HardwareLimits.int16_activations``: the BYOC
offloads them), as ``tensor:`` / ``name:`` overrides placed before the user's own (which win).

* ``16``: every depthwise input (:func:`depthwise_overrides`). On the zoo's models 4-30 % of the MACs
  get a 16-bit operand, and the host program is slower (README "PTQ accuracy").
* ``"auto"`` (the default): each depthwise conv's **loss** is measured on the first calibration batches
  (:func:`measure_losses`): the SQNR of its input on its calibrated 8-bit grid, minus the SQNR that input
  noise leaves in the conv's output (``w.p`` over the input patches ``p``, bias aside: the taps' own
  cancellation), both from the float values. Inputs whose conv loses at least ``depthwise_input_loss_db``
  (10 dB by default) are widened; the others keep 8 bits. Measured on EfficientNet-Lite0 (README "PTQ
  accuracy"): its first depthwise conv loses 12.8 dB and alone carries most of what widening all 16 gains,
  at a fraction of the cost; the next loses 8.7 dB, the others 4.6 dB or less. With ``statistics=`` and no batches
  there is nothing to measure on: 8 bits, and a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import tvm
from tvm import relax

from .. import math as sm
from ..calibration import Observer
from ..config import LayerInfo, LayerOverride, QConfig
from ..graph import GraphIndex, constant_value, op_name, static_shape
from ..lowering.families import FAMILIES
from ..math.metrics import sqnr_db_from_sums
from .grids import output_bounds, tensor_grid
from .precision import mac_readers, wide_overrides
from .scale_search import grouped_product, patch_moments, window_of

__all__ = ["DepthwiseLoss", "auto_applies", "auto_overrides", "depthwise_convs", "depthwise_inputs",
           "depthwise_overrides", "measure_losses"]

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DepthwiseLoss:
    """One depthwise conv's measurement: the tensors it would widen, its input's and output's 8-bit SQNR."""

    layer: str
    tensors: tuple[str, ...]
    input_sqnr_db: float
    output_sqnr_db: float
    wide: bool

    @property
    def loss_db(self) -> float:
        return self.input_sqnr_db - self.output_sqnr_db

    def to_dict(self) -> dict:
        """JSON-ready (strict JSON: an infinite SQNR, no noise at all, is None)."""
        def db(value: float) -> Optional[float]:
            return round(value, 2) if np.isfinite(value) else None
        return {"layer": self.layer, "tensors": list(self.tensors), "input_sqnr_db": db(self.input_sqnr_db),
                "output_sqnr_db": db(self.output_sqnr_db), "loss_db": db(self.loss_db),
                "bits": 16 if self.wide else 8}


def depthwise_convs(amod: tvm.IRModule) -> list[tuple[relax.Call, list[str]]]:
    """Each depthwise conv (a grouped ``conv2d`` with one input channel per group), in program order, with the
    activations it reads: its input's mark and the marks that input keeps the grid of (:func:`_grid_sources`)."""
    index = GraphIndex(amod["main"])
    found = []
    for var in index.order:
        call = index.producer[var]
        if op_name(call) != "relax.nn.conv2d" or int(call.attrs["groups"]) == 1:  # type: ignore[union-attr]
            continue
        assert isinstance(call, relax.Call)
        shape = static_shape(call.args[1])
        if shape is not None and shape[str(call.attrs["kernel_layout"]).index("I")] == 1:
            found.append((call, _grid_sources(index, call.args[0])))
    return found


def depthwise_inputs(amod: tvm.IRModule) -> list[str]:
    """The activations depthwise convs read, in program order, each with the tensors it keeps the grid of
    (through reshapes, pads, clips, ...: ops whose integer output has their one operand's parameters), since
    widening only the last would change nothing."""
    found: list[str] = []
    for _, names in depthwise_convs(amod):
        found += [name for name in names if name not in found]
    return found


def _grid_sources(index: GraphIndex, expr: Any) -> list[str]:
    """The marked tensors from ``expr`` back through ops that keep their one operand's grid."""
    names: list[str] = []
    while isinstance(expr, relax.Var) and isinstance(call := index.producer.get(expr), relax.Call):
        op = op_name(call)
        if op == "sima.simulated_quantize":
            names.append(str(call.attrs["name"]))
            expr = call.args[0]
            continue
        family = FAMILIES.get(op or "")
        operands = family.operands(call) if family is not None and family.keeps(call) else []
        if len(operands) != 1:
            break
        expr = operands[0]
    return names


def depthwise_overrides(amod: tvm.IRModule, config: QConfig) -> tuple[LayerOverride, ...]:
    """With ``config.depthwise_input_bits=16``: the overrides widening every depthwise input (module docstring)."""
    if config.depthwise_input_bits != 16 or config.activation_bits == 16:
        return ()
    tensors = depthwise_inputs(amod)
    return wide_overrides(tensors, mac_readers(amod)[0]) if tensors else ()


def measure_losses(amod: tvm.IRModule, observers: Mapping[str, Observer], config: QConfig,
                   samples: Mapping[str, np.ndarray], layers: Sequence[LayerInfo] = ()) -> list[DepthwiseLoss]:
    """Each depthwise conv's loss on ``samples`` (float values of the annotated module's tensors,
    :func:`~tvm_sima.passes.scale_search.float_taps`), its input on the grid calibration gave it at 8 bits;
    ``wide`` when the loss reaches ``config.depthwise_input_loss_db``. Convs whose input or weight is not
    available (no sample, a weight computed at run time), already 16-bit (an override) or exact on the 8-bit grid
    are left out."""
    index = GraphIndex(amod["main"])
    bounds, by_name, marks = output_bounds(index), {layer.name: layer for layer in layers}, _marks(index)
    losses = []
    for call, names in depthwise_convs(amod):
        weight = _float_weight(index, call)
        if not names or names[0] not in samples or names[0] not in observers or weight is None:
            continue
        cfg = config.for_tensor(names[0], by_name)
        model_input = marks[names[-1]].args[0] in amod["main"].params  # type: ignore[union-attr]
        if (cfg.input_bits if model_input else cfg.activation_bits) != 8:
            continue
        x = samples[names[0]].astype(np.float64)
        qp = tensor_grid(observers[names[0]], cfg, model_input, bounds.get(names[0]))[0]
        noise = sm.dequantize(sm.quantize(x, qp), qp) - x
        if not np.any(noise):
            continue  # the 8-bit grid holds the samples exactly: nothing to lose
        layout = str(call.attrs["kernel_layout"])
        oihw = weight.transpose([layout.index(c) for c in "OIHW"])
        window = window_of(call.attrs, oihw.shape[2:])
        taps = oihw.reshape(oihw.shape[0], -1).astype(np.float64)
        signal, error = (float((grouped_product(taps, patch_moments(v, window, centred=False)) * taps).sum())
                         for v in (x, noise))
        in_db = sqnr_db_from_sums(float((x * x).sum()), float((noise * noise).sum()))
        out_db = sqnr_db_from_sums(signal, error)
        losses.append(DepthwiseLoss(names[0].rsplit(".", 1)[0], tuple(names), in_db, out_db,
                                    in_db - out_db >= config.depthwise_input_loss_db))
    return losses


def auto_applies(amod: tvm.IRModule, config: QConfig) -> bool:
    """Whether ``depthwise_input_bits="auto"`` has anything to decide: the setting, 8-bit activations and a
    depthwise conv."""
    return config.depthwise_input_bits == "auto" and config.activation_bits != 16 and bool(depthwise_convs(amod))


def auto_overrides(amod: tvm.IRModule, observers: Mapping[str, Observer], config: QConfig,
                   samples: Optional[Mapping[str, np.ndarray]], layers: Sequence[LayerInfo] = (),
                   ) -> tuple[tuple[LayerOverride, ...], list[DepthwiseLoss]]:
    """With ``depthwise_input_bits="auto"``: the overrides widening the inputs of the depthwise convs that lose at
    least ``depthwise_input_loss_db`` on ``samples`` (none without samples: a warning), and every measurement."""
    if not auto_applies(amod, config):
        return (), []
    if samples is None:
        LOG.warning("quantize: depthwise_input_bits='auto' measures on calibration batches, and none were given "
                    "(statistics only): every depthwise input keeps 8 bits; pass the dataset too, or set "
                    "depthwise_input_bits to 8 or 16")
        return (), []
    losses = measure_losses(amod, observers, config, samples, layers)
    tensors = list(dict.fromkeys(t for loss in losses if loss.wide for t in loss.tensors))
    for loss in losses:
        if loss.wide:
            LOG.info("quantize: 16-bit input for depthwise %s: it loses %.1f dB of its 8-bit input's SQNR "
                     "(%.1f -> %.1f dB; depthwise_input_loss_db=%g)", loss.layer, loss.loss_db, loss.input_sqnr_db,
                     loss.output_sqnr_db, config.depthwise_input_loss_db)
    return (wide_overrides(tensors, mac_readers(amod)[0]) if tensors else ()), losses


def _marks(index: GraphIndex) -> dict[str, relax.Call]:
    """The ``simulated_quantize`` marks by tensor name."""
    calls = (index.producer[var] for var in index.order)
    return {str(c.attrs["name"]): c for c in calls if op_name(c) == "sima.simulated_quantize"}  # type: ignore[union-attr]


def _float_weight(index: GraphIndex, call: relax.Call) -> Optional[np.ndarray]:
    """The float weight of a conv of the annotated module (behind its ``simulated_quantize`` mark), else None."""
    expr = call.args[1]
    mark = index.producer.get(expr) if isinstance(expr, relax.Var) else None
    if op_name(mark) == "sima.simulated_quantize":
        expr = mark.args[0]  # type: ignore[union-attr]
    return constant_value(expr)

