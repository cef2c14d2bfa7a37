"""Float convolutions in the layout the CPU schedule vectorizes: NHWC data, HWIO weights.

In NCHW the innermost output index is a pixel; a vector of pixels of a stride-2 or depthwise
conv reads its input with a stride, and the rule-based schedule (:mod:`.schedule_rules`) falls
back to scalars. In NHWC with HWIO weights the innermost index is the output channel: input
pixels are broadcast, weights and outputs are contiguous vectors, for regular, pointwise and
depthwise convs alike.

:func:`float_conv_layout` runs Relax's ``ConvertLayout`` on float ``relax.nn.conv2d`` calls; the
transposes it inserts cancel between convs and fold into the constant weights, leaving one
transpose at the model's input and one at its output. The importer's TE ``maximum`` /
``minimum`` calls (ONNX ``Clip``) become Relax ops first (:func:`.canonicalize.undo_te_calls`),
else ConvertLayout would wrap each clip in two transposes. Integer programs (``sima.conv2d``) and
modules without a float conv2d are returned unchanged.
"""

from __future__ import annotations

import tvm
from tvm import relax

from .canonicalize import undo_te_calls

__all__ = ["CONV_LAYOUT", "FloatConvLayout", "float_conv_layout"]

#: Desired layouts of ``relax.nn.conv2d``: [data, kernel].
CONV_LAYOUT = ["NHWC", "HWIO"]


def _float_convs(func: relax.Function) -> int:
    found = []

    def visit(expr: relax.Expr) -> None:
        if (isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == "relax.nn.conv2d"
                and "float" in str(expr.args[0].ty.dtype)
                and [str(expr.attrs["data_layout"]), str(expr.attrs["kernel_layout"])] != CONV_LAYOUT):
            found.append(expr)

    relax.analysis.post_order_visit(func, visit)
    return len(found)


def float_conv_layout(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with its float convs in :data:`CONV_LAYOUT` (module docstring); unchanged if it has none."""
    names = tuple(gv.name_hint for gv, f in mod.functions.items()
                  if isinstance(f, relax.Function) and _float_convs(f) and not (f.attrs and "Codegen" in f.attrs))
    if not names:
        return mod
    mod = undo_te_calls(relax.transform.FoldConstant()(mod), names)
    # conv2d_transpose stays NCHW / IOHW (the only layout TOPI legalizes): without its own entry,
    # ConvertLayout would carry the convs' NHWC into it (PP-OCR det's upsampling head)
    return relax.transform.ConvertLayout({"relax.nn.conv2d": CONV_LAYOUT,
                                          "relax.nn.conv2d_transpose": ["NCHW", "IOHW"]})(mod)


@tvm.transform.module_pass(opt_level=0, name="FloatConvLayout")
def FloatConvLayout(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:  # noqa: N802 (a pass)
    """:func:`float_conv_layout` as a module pass (the ``sima`` pipeline runs it before legalization)."""
    return float_conv_layout(mod)
