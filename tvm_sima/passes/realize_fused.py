"""Realize functions of the fused layers: conv2d / conv2d_transpose / matmul with their epilogue.

A conv2d or matmul with its epilogue (bias, batch norm, relu / relu6 / clip) becomes one fused
``sima.conv2d`` / ``sima.dense`` (int8 weight, int32 bias, shift; per ``requant_mode``); a
conv2d_transpose becomes zero insertion on the codes and a ``sima.conv2d``
(:mod:`~tvm_sima.lowering.transpose_conv`). Importing this module registers them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Union

import numpy as np
from tvm import relax

from .. import lowering
from .. import math as sm
from .. import ops as so
from ..config import QConfig
from ..graph import static_shape
from .adaround import AdaRoundParams, adaround_layer
from .patterns import Epilogue, epilogue_chain
from .realize_context import QValue, RealizeContext, _zp, register_realize_function
from .scale_search import Window, search_output_scale, window_of

__all__: list[str] = []


def _weight_spec(config: QConfig) -> lowering.WeightSpec:
    return lowering.WeightSpec(config.weight_granularity is sm.Granularity.PER_CHANNEL, config.weight_scheme,
                               config.weight_bits, config.bias_bits, config.weight_scale == "power2")


def _fused_io(ctx: RealizeContext, var: relax.Var,
              call: relax.Call) -> Union[str, tuple[QValue, Epilogue, sm.QParams, str]]:
    """A conv / matmul's quantized input, its epilogue and the epilogue output's parameters and name,
    or why the layer cannot be fused."""
    xq = ctx.quantized(call.args[0])
    if xq is None:
        return "input is not quantized"
    chain = epilogue_chain(ctx.index, var)
    assert chain is not None
    out = ctx.output_qparams(chain.output)
    if out is None:
        return "output has no calibrated scale"
    return xq, chain, out[0], out[1]


def _fused_constants(ctx: RealizeContext, layer: str, config: QConfig, weight: np.ndarray, bias: np.ndarray,
                     xq: QValue, yq: sm.QParams, is_dense: bool, mean_of: relax.Expr,
                     groups: int = 1, mean_scale: float = 1.0,
                     stored: Optional[np.ndarray] = None) -> Union[str, lowering.FusedConstants]:
    """The layer's constants (bias-corrected when configured), or why the accumulator or the bias could overflow.

    ``mean_scale``: the fraction of the fused op's input positions that hold ``mean_of``'s values
    (the rest are inserted zeros: a transposed convolution's stride); ``stored``: AdaRound's weights.
    """
    mean = ctx.input_mean(mean_of) if config.bias_correction else None
    spec, narrow = _weight_spec(config), None
    while True:
        try:
            consts, notes = lowering.corrected_float_weights(
                weight, bias, xq.qparams, yq, is_dense, spec, config.requant,
                None if mean is None else mean * mean_scale, groups, stored)
        except ValueError as err:  # the int32 bias cannot hold the input zero point's fold (16-bit data and weights)
            return (f"no int32 bias for {xq.qparams.dtype.bits}-bit inputs and {config.weight_bits}-bit weights "
                    f"({err}); use 8-bit activations or weights for this layer")
        overflow = lowering.accumulator_overflow(consts, xq.qparams, is_dense)
        if overflow is None or consts.accumulator_bits >= 48:
            break
        narrow, spec = overflow, dataclasses.replace(spec, bias_bits=48)  # the op's 48-bit accumulator, not float
    ctx.report.notes.extend(f"{layer}: {note}" for note in notes)
    if narrow is not None and overflow is None:
        ctx.report.notes.append(f"{layer}: {narrow.split(';')[0]}: 48-bit accumulator")
    return overflow or consts


def _searched_output(ctx: RealizeContext, layer: str, config: QConfig, weight: np.ndarray, bias: np.ndarray,
                     xq: QValue, chain: Epilogue, out: tuple[sm.QParams, str], call: relax.Call,
                     window: Optional[Window]) -> sm.QParams:
    """The output's parameters: the calibrated ones, or with ``scale_search`` the searched ones
    (:mod:`~tvm_sima.passes.scale_search`), which then replace them for every user of the tensor."""
    yq, name = out
    x, y = ctx.float_sample(call.args[0]), ctx.samples.get(name)
    if not config.scale_search or x is None or y is None or name in ctx.verdicts:
        return yq
    found, choice = search_output_scale(layer, weight, bias, xq.qparams, yq, window is None, _weight_spec(config),
                                        config.requant, x, y, (chain.lo, chain.hi), window, config.bias_correction)
    if choice is not None:
        ctx.report.scales.append(choice.to_dict())
        ctx.choose_qparams(name, found)
    return found


def _adarounded(ctx: RealizeContext, layer: str, config: QConfig, weight: np.ndarray, bias: np.ndarray,
                xq: QValue, yq: sm.QParams, call: relax.Call, window: Optional[Window]) -> Optional[np.ndarray]:
    """With ``adaround``, the weights on the op's grid as :mod:`~tvm_sima.passes.adaround` rounds them (after the
    output scale is chosen, before bias correction); None: nearest rounding."""
    x = ctx.float_sample(call.args[0])
    if not config.adaround or x is None:
        return None
    x_tilde = ctx.quantized_samples.get(xq.name)
    if x_tilde is not None and x_tilde.shape != x.shape:
        x_tilde = None
    stored, choice = adaround_layer(layer, weight, bias, xq.qparams, yq, window is None, _weight_spec(config),
                                    config.requant, x, window, config.bias_correction, AdaRoundParams.of(config),
                                    x_tilde)
    if choice is not None:
        ctx.report.roundings.append(choice.to_dict())
    return stored


def _emit_fused(ctx: RealizeContext, chain: Epilogue, fused: relax.Expr, yq: sm.QParams, name: str, layer: str,
                op: str) -> None:
    """Bind the fused op as the epilogue's output; the epilogue's own bindings are consumed."""
    ctx.set_q(chain.output, fused, yq, name)
    ctx.consumed.update(chain.vars)
    ctx.report.fused.append(layer)
    ctx.report.layer_outputs[name] = layer
    ctx.report.integer_ops[op] += 1


def _layer_of_weight(ctx: RealizeContext, weight_name: str) -> tuple[str, QConfig]:
    layer = weight_name.rsplit(".", 1)[0]
    return layer, ctx.config_of(weight_name)


#: ``emit(x, constants, output codes, output dtype) -> the fused op``.
_ConvEmit = Callable[[QValue, lowering.FusedConstants, tuple[int, int], str], relax.Expr]


def _fused_conv(ctx: RealizeContext, var: relax.Var, call: relax.Call, to_hwigo: Callable[[np.ndarray], np.ndarray],
                groups: int, emit: _ConvEmit, mean_scale: float = 1.0, searched: bool = False) -> Optional[str]:
    """A conv-like layer and its epilogue as one ``sima.conv2d``: ``to_hwigo`` makes the HWIGO float weight;
    ``searched``: a plain conv2d, whose output scale ``scale_search`` may choose."""
    found = ctx.weight(call.args[1])
    if found is None:
        return "weight not annotated (skipped layer)"
    weight, wname = found
    layer, config = _layer_of_weight(ctx, wname)
    io = _fused_io(ctx, var, call)
    if isinstance(io, str):
        return io
    xq, chain, yq, name = io
    hwigo = to_hwigo(weight) * chain.scale.reshape(1, 1, 1, groups, -1)
    stored = None
    if searched:
        window = window_of(call.attrs, hwigo.shape[:2])
        yq = _searched_output(ctx, layer, config, hwigo, chain.shift, xq, chain, (yq, name), call, window)
        stored = _adarounded(ctx, layer, config, hwigo, chain.shift, xq, yq, call, window)
    consts = _fused_constants(ctx, layer, config, hwigo, chain.shift, xq, yq, False, call.args[0], groups,
                              mean_scale, stored)
    if isinstance(consts, str):
        return consts
    fused = emit(xq, consts, ctx.numerics.clip_codes(yq, chain.lo, chain.hi), yq.dtype.container.name)
    _emit_fused(ctx, chain, fused, yq, name, layer, "sima.conv2d")
    return None


@register_realize_function("relax.nn.conv2d")
def _realize_conv2d(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    a = call.attrs
    layout, kernel_layout, out_layout = str(a["data_layout"]), str(a["kernel_layout"]), str(a["out_layout"])
    if layout not in so.LAYOUTS or out_layout != layout or sorted(kernel_layout) != sorted("OIHW"):
        return f"layouts {layout}/{kernel_layout}->{out_layout} (sima.conv2d takes NCHW or NHWC data)"
    groups = int(a["groups"])

    def to_hwigo(weight: np.ndarray) -> np.ndarray:
        # Any kernel layout (TFLite's depthwise HWOI, OHWI, ...) is transposed to the op's own.
        w = weight.transpose([kernel_layout.index(c) for c in so.LAYOUTS[layout]])
        return sm.oihw_to_hwigo(w, groups) if layout == "NCHW" else w.reshape(*w.shape[:3], groups, -1)

    def emit(xq: QValue, consts: lowering.FusedConstants, codes: tuple[int, int], out_dtype: str) -> relax.Expr:
        return lowering.emit_conv2d(xq.expr, consts, _zp(xq.qparams), codes, out_dtype,
                                    strides=[int(s) for s in a["strides"]], padding=[int(p) for p in a["padding"]],
                                    dilation=[int(d) for d in a["dilation"]], groups=groups, layout=layout)

    return _fused_conv(ctx, var, call, to_hwigo, groups, emit, searched=True)


@register_realize_function("relax.nn.conv2d_transpose")
def _realize_conv2d_transpose(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    """A transposed convolution: zero insertion (a move of the codes), then the fused ``sima.conv2d``."""
    shape, tc = static_shape(call.args[0]), lowering.transpose_conv(call)
    if shape is None or isinstance(tc, str):
        return tc if isinstance(tc, str) else "input without a static shape"

    def emit(xq: QValue, consts: lowering.FusedConstants, codes: tuple[int, int], out_dtype: str) -> relax.Expr:
        assert shape is not None and not isinstance(tc, str)
        return lowering.emit_conv2d_transpose(ctx.bb, xq.expr, shape, consts, _zp(xq.qparams), codes, out_dtype, tc)

    # The inserted zeros are part of the fused op's input: the real values fill 1 / (s_h s_w) of it.
    return _fused_conv(ctx, var, call, tc.hwigo, tc.groups, emit, mean_scale=1.0 / (tc.strides[0] * tc.strides[1]))


@register_realize_function("relax.matmul")
def _realize_matmul(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    found = ctx.weight(call.args[1])
    if found is None:
        return "right operand is not a constant weight (or the layer is skipped)"
    weight, wname = found
    if weight.ndim != 2:
        return f"weight of rank {weight.ndim} (sima.dense takes a 2-D weight)"
    layer, config = _layer_of_weight(ctx, wname)
    io = _fused_io(ctx, var, call)
    if isinstance(io, str):
        return io
    xq, chain, yq, name = io
    dense = weight.T * chain.scale[:, None]
    yq = _searched_output(ctx, layer, config, dense, chain.shift, xq, chain, (yq, name), call, None)
    stored = _adarounded(ctx, layer, config, dense, chain.shift, xq, yq, call, None)
    consts = _fused_constants(ctx, layer, config, dense, chain.shift, xq, yq, True, call.args[0], stored=stored)
    if isinstance(consts, str):
        return consts
    codes = ctx.numerics.clip_codes(yq, chain.lo, chain.hi)
    fused = lowering.emit_dense(ctx.bb, xq.expr, consts, _zp(xq.qparams), codes, yq.dtype.container.name,
                                [int(d) for d in call.args[0].ty.shape], [int(d) for d in call.ty.shape])
    _emit_fused(ctx, chain, fused, yq, name, layer, "sima.dense")
    return None
