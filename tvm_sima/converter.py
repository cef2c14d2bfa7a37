"""``tvm_sima.convert``: fold QDQ chains of a pre-quantized model into fused sima ops.

Matched (NHWC or NCHW data, per-tensor or per-channel int8 weights)::

    quantize(act?(add?(conv2d | matmul(dequantize(x), dequantize(W)), dequantize(b))))

where ``W`` is an int8 constant, ``b`` an int32 constant (optionally reshaped) and ``act`` relu /
relu6 / clip. Each chain becomes one ``sima.conv2d`` / ``sima.dense`` on the raw integers:

* ``mode="tflite"``: ``tflite_requantization_constants`` (Q31 multiplier and shift), the
  activation range as TFLite computes it (float32, round half away from zero), LiteRT's rounding
  per op (double rounding for convolutions, single for FULLY_CONNECTED / matmul): bit-exact with
  LiteRT's reference kernels;
* ``mode="shift"``: ``requantize_qnn_convolution_dense`` folds the scale into the weights so the
  op needs only a right shift (SiMa); its error against the tflite mode is measured in the tests.

Everything else is left as it is and listed in the report (``report["unconverted"]``).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import tvm
from tvm import relax

from . import math as sm
from . import ops as so
from .frontends.tflite_numpy import clamp_codes
from .passes.annotate import remap
from .passes.patterns import GraphIndex, clip_bounds, constant_value, op_name

__all__ = ["convert", "MODES"]

MODES = ("tflite", "shift")
_ROOTS = ("relax.nn.conv2d", "relax.matmul")


def _qp_from_attrs(attrs: Any) -> sm.QParams:
    scale = np.asarray([float(s) for s in attrs["scale"]])
    zp = np.asarray([int(z) for z in attrs["zero_point"]])
    axis = int(attrs["axis"])
    if scale.size == 1:
        return sm.QParams(float(scale[0]), int(zp[0]), str(attrs["dtype"]))
    return sm.QParams(scale, zp, str(attrs["dtype"]), axis=axis)


def _dequantized(index: GraphIndex, expr: relax.Expr) -> Optional[tuple[relax.Expr, sm.QParams]]:
    """``(integer source, qparams)`` of a var bound to ``sima.dequantize`` (through reshapes for constants)."""
    if not isinstance(expr, relax.Var):
        return None
    value = index.producer.get(expr)
    if op_name(value) == "relax.reshape" and isinstance(value.args[0], relax.Var):  # type: ignore[union-attr]
        value = index.producer.get(value.args[0])  # type: ignore[union-attr]
    if op_name(value) != "sima.dequantize":
        return None
    assert isinstance(value, relax.Call)
    return value.args[0], _qp_from_attrs(value.attrs)


def _range(qp: sm.QParams, lo: float, hi: float) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized for real bounds (infinite: unbounded)."""
    return clamp_codes(float(np.atleast_1d(qp.scale)[0]), int(np.atleast_1d(qp.zero_point)[0]), qp.qmin, qp.qmax,
                       None if lo == -np.inf else lo, None if hi == np.inf else hi)


class _Chain:
    def __init__(self, root: relax.Var, x: relax.Expr, x_q: sm.QParams, w: np.ndarray, w_q: sm.QParams) -> None:
        self.root, self.x, self.x_q, self.w, self.w_q = root, x, x_q, w, w_q
        self.bias: Optional[np.ndarray] = None
        self.lo, self.hi = -np.inf, np.inf
        self.vars: list[relax.Var] = []
        self.out: Optional[relax.Var] = None
        self.out_q: Optional[sm.QParams] = None


def _match(index: GraphIndex, var: relax.Var) -> Optional[_Chain]:
    call = index.producer[var]
    if op_name(call) not in _ROOTS:
        return None
    assert isinstance(call, relax.Call)
    x, w = _dequantized(index, call.args[0]), _dequantized(index, call.args[1])
    if x is None or w is None:
        return None
    weight = constant_value(w[0])
    if weight is None or weight.dtype != np.int8 or str(x[1].dtype) not in ("int8", "uint8"):
        return None
    chain = _Chain(var, x[0], x[1], weight, w[1])
    current = var
    while True:
        user = index.single_user(current)
        if user is None:
            return None
        value = index.producer[user]
        name = op_name(value)
        assert isinstance(value, relax.Call) or name is None
        bounds = clip_bounds(value)
        if name == "relax.add" and chain.bias is None and chain.lo == -np.inf and chain.hi == np.inf:
            other = value.args[1] if value.args[0].same_as(current) else value.args[0]  # type: ignore[union-attr]
            b = _dequantized(index, other)
            bias = constant_value(b[0]) if b is not None else None
            if bias is None or bias.dtype != np.int32:
                return None
            chain.bias = bias.reshape(-1)
        elif bounds is not None and bounds[0].same_as(current):
            chain.lo, chain.hi = max(chain.lo, bounds[1]), min(chain.hi, bounds[2])
        elif name == "sima.quantize":
            chain.out, chain.out_q = user, _qp_from_attrs(value.attrs)  # type: ignore[union-attr]
            chain.vars.append(user)
            return chain
        else:
            return None
        chain.vars.append(user)
        current = user


def _fused(chain: _Chain, call: relax.Call, mode: str, new_x: relax.Expr) -> relax.Expr:
    is_dense = op_name(call) == "relax.matmul"
    x_q, w_q, out_q = chain.x_q, chain.w_q, chain.out_q
    assert out_q is not None
    zp_x = int(np.atleast_1d(x_q.zero_point)[0])
    if is_dense:
        weight = chain.w.T  # (K, O) -> OI
        groups, layout = 1, ""
    else:
        a = call.attrs
        layout, kernel_layout, groups = str(a["data_layout"]), str(a["kernel_layout"]), int(a["groups"])
        hwio = chain.w.transpose([kernel_layout.index(c) for c in "HWIO"])
        weight = hwio.reshape(*hwio.shape[:3], groups, -1)  # HWIGO
    product = sm.tflite_product_quantization(float(np.atleast_1d(x_q.scale)[0]), np.atleast_1d(w_q.scale))
    product_q = product[0] if len(product) == 1 else product
    output = sm.Quantization(float(np.atleast_1d(out_q.scale)[0]), int(np.atleast_1d(out_q.zero_point)[0]))
    qmin, qmax = _range(out_q, chain.lo, chain.hi)
    if mode == "tflite":
        b, mult, zc, shift = sm.tflite_requantization_constants(weight, chain.bias, zp_x, product_q, output, is_dense)
        w_int, total = weight, np.asarray(shift) + 31
        kwargs: dict[str, Any] = {"multiplier": np.asarray(mult).tolist(), "output_zero_point": int(zc),
                                  "rounding": "half_up" if is_dense else "tflite"}
    else:
        w_int, b, folded_shift = sm.requantize_qnn_convolution_dense(weight, chain.bias, zp_x, product_q, output,
                                                                     is_dense)
        total = np.asarray(folded_shift)
        kwargs = {"multiplier": None, "output_zero_point": 0, "rounding": None}
    shift_arg = total.tolist() if total.ndim else int(total)
    bias = relax.const(np.asarray(b).astype("int32"), "int32")
    if is_dense:
        return so.dense(new_x, relax.const(np.ascontiguousarray(w_int).astype("int8"), "int8"), bias, shift=shift_arg,
                        input_zero_point=zp_x, qmin=qmin, qmax=qmax, out_dtype=str(out_q.dtype), **kwargs)
    kernel = sm.hwigo_to_oihw(w_int) if layout == "NCHW" else w_int.reshape(*w_int.shape[:3], -1)
    a = call.attrs
    return so.conv2d(new_x, relax.const(np.ascontiguousarray(kernel).astype("int8"), "int8"), bias, shift=shift_arg,
                     strides=[int(v) for v in a["strides"]], padding=[int(v) for v in a["padding"]],
                     dilation=[int(v) for v in a["dilation"]], groups=groups, data_layout=layout,
                     input_zero_point=zp_x, qmin=qmin, qmax=qmax, out_dtype=str(out_q.dtype), **kwargs)


def convert(mod: tvm.IRModule, mode: str = "tflite") -> tuple[tvm.IRModule, dict]:
    """Fold every matched QDQ chain of ``main`` into a fused sima op; returns the module and a report.

    The report lists ``converted`` (the fused ops, by output var) and ``unconverted`` (every other
    float conv2d / matmul, with the reason).
    """
    if mode not in MODES:
        raise ValueError(f"convert: mode={mode!r}; use one of {MODES}")
    func = mod["main"]
    index = GraphIndex(func)
    chains: dict[relax.Var, _Chain] = {}
    skip: set = set()
    report: dict[str, list] = {"converted": [], "unconverted": []}
    for var in index.order:
        if op_name(index.producer[var]) in _ROOTS:
            chain = _match(index, var)
            if chain is None:
                report["unconverted"].append({"op": op_name(index.producer[var]), "tensor": var.name,
                                              "reason": "not dequantize(int8 x), dequantize(int8 const W) -> "
                                                        "[+ dequantize(int32 const b)] [-> relu/clip] -> quantize"})
                continue
            chains[var] = chain
            skip.update(chain.vars)
    bb = relax.BlockBuilder()
    mapping: dict = {}
    with bb.function("main", list(func.params), attrs=dict(func.attrs) if func.attrs else None):
        with bb.dataflow():
            for var in index.order:
                if var in skip:
                    continue
                value = index.producer[var]
                chain = chains.get(var)
                if chain is None:
                    mapping[var] = bb.emit(remap(value, mapping), name_hint=var.name)
                    continue
                assert isinstance(value, relax.Call) and chain.out is not None
                fused = bb.emit(_fused(chain, value, mode, remap(chain.x, mapping)), name_hint=chain.out.name)
                assert chain.out_q is not None
                mapping[chain.out] = bb.emit(so.quantize_info(fused, chain.out_q, name=chain.out.name),
                                             name_hint=f"{chain.out.name}_qi")
                report["converted"].append({"op": "sima.dense" if op_name(value) == "relax.matmul" else "sima.conv2d",
                                            "tensor": chain.out.name})
            out = bb.emit_output(remap(func.body.body, mapping))
        bb.emit_func_output(out)
    result = mod.clone()
    result["main"] = bb.get()["main"]
    return relax.transform.DeadCodeElimination(["main"])(result), report
