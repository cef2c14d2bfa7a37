"""One lowering for both routes: float ops with quantization parameters -> integer sima / Relax ops.

``quantize`` (float models, :mod:`tvm_sima.passes.realize`) and ``convert`` (pre-quantized
models, :mod:`tvm_sima.converter`) only find the parameters in their graphs; the constants and
the integer ops of every op come from here, so the same op cannot drift between the two routes.

* :mod:`.fused` — ``sima.conv2d`` / ``sima.dense`` (integer weights, int32 bias, requantization);
* :mod:`.transpose_conv` — a transposed convolution as zero insertion and ``sima.conv2d``;
* :mod:`.arithmetic` — add / subtract / multiply of two tensors;
* :mod:`.pooling` — mean, global and windowed average pooling;
* :mod:`.tables` — unary functions as lookup tables, integer softmax;
* :mod:`.chains` — an element-wise chain of one input (hard-swish, HardSigmoid, ...): one table;
* :mod:`.constant_tables` — an op of a tensor and a constant: a table per constant value (16-bit codes of
  add / subtract / multiply / divide: one rounding of an int64 affine form; PReLU: :mod:`.prelu`);
* :mod:`.moves` — value-moving ops, clips, concat;
* :mod:`.resize` — ``resize2d``: nearest on the codes, bilinear with fixed-point taps;
* :mod:`.numerics` — :class:`Numerics`, each route's choice of algorithm per family;
* :mod:`.families` — :data:`FAMILIES`, the op -> family table both routes dispatch through.
"""

from .base import Lowered
from .chains import ELEMENTWISE, Chain, find_chains, lower_chain
from .constant_tables import affine_with_constant, binary_with_constant, lower_by_constant
from .families import CLIPS, FAMILIES, Family, Request, register
from .fused import (
    FusedConstants,
    WeightGrid,
    WeightSpec,
    accumulator_bits,
    accumulator_overflow,
    corrected_float_weights,
    emit_conv2d,
    emit_dense,
    float_weight_grid,
    from_float_weights,
    from_integer_weights,
    from_product,
)
from .moves import MOVES
from .numerics import AddMethod, MultiplyMethod, Numerics, PoolMethod, ResizeMethod, TableRounding
from .tables import LUT_FUNCTIONS, SOFTMAX_EXP_BITS, emit_table, table
from .transpose_conv import TransposeConv, emit_conv2d_transpose, transpose_conv

__all__ = [
    "AddMethod", "CLIPS", "Chain", "ELEMENTWISE", "FAMILIES", "Family", "FusedConstants", "LUT_FUNCTIONS", "Lowered",
    "MOVES", "MultiplyMethod", "Numerics", "PoolMethod", "Request", "ResizeMethod", "SOFTMAX_EXP_BITS", "TableRounding",
    "TransposeConv", "WeightGrid", "WeightSpec",
    "accumulator_bits", "accumulator_overflow", "affine_with_constant", "binary_with_constant",
    "corrected_float_weights", "emit_conv2d",
    "emit_conv2d_transpose",
    "emit_dense", "emit_table", "find_chains", "float_weight_grid", "from_float_weights", "from_integer_weights",
    "from_product",
    "lower_by_constant", "lower_chain", "register", "table", "transpose_conv",
]
