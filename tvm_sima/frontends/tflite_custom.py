"""Custom TFLite ops that float models ship with, imported as Relax ops (TVM's importer refuses any custom op).

:class:`CustomOpConverter` is TVM's TFLite ``OperatorConverter`` plus the ops of
:data:`CUSTOM_OPS`, by custom code; :func:`tvm_sima.load_model` passes it to ``from_tflite``.

``Convolution2DTransposeBias`` (MediaPipe, e.g. selfie segmentation): a transposed convolution with
a bias, written from MediaPipe's documented kernel (``mediapipe/util/tflite/operations/
transpose_conv_bias.cc``): inputs ``data`` NHWC, ``weights`` ``[O, kh, kw, I]``, ``bias`` ``[O]``;
the custom options are the raw ``TfLiteTransposeConvParams`` struct (int32 padding enum, 1 SAME /
2 VALID, then int32 stride width and stride height). SAME pads ``p = max(0, k - (in - 1) % s - 1)``
in total, ``p // 2`` before; the output has ``s * (in - 1) + k - p`` rows; every output starts at
the bias and each input pixel scatters ``x * w`` to rows ``iy * s - p // 2 + ky``: relax's
``conv2d_transpose`` (IOHW kernel) plus the bias.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from tvm import relax
from tvm.relax.frontend.tflite.tflite_frontend import OperatorConverter

__all__ = ["CUSTOM_OPS", "CustomOpConverter", "transpose_conv_bias_padding"]

#: TfLitePadding values in the custom options.
_SAME, _VALID = 1, 2


def transpose_conv_bias_padding(same: bool, size: int, kernel: int, stride: int) -> tuple[int, int]:
    """``(before, after)`` padding of one spatial axis of ``Convolution2DTransposeBias`` (module docstring)."""
    total = max(0, kernel - (size - 1) % stride - 1) if same else 0
    return total // 2, total - total // 2


def _transpose_conv_bias(self: OperatorConverter, op: Any) -> relax.Expr:
    data, weights, bias = self.get_input_tensors(op)
    raw = op.CustomOptionsAsNumpy()
    options = raw.tobytes() if not isinstance(raw, int) else b""
    if len(options) < 12:
        raise ValueError(f"Convolution2DTransposeBias: custom options of {len(options)} bytes; expected the 12-byte "
                         "TfLiteTransposeConvParams (padding, stride_width, stride_height)")
    padding, stride_w, stride_h = struct.unpack("<iii", options[:12])
    if padding not in (_SAME, _VALID) or stride_w < 1 or stride_h < 1:
        raise ValueError(f"Convolution2DTransposeBias: padding {padding}, strides {stride_h}x{stride_w}; expected "
                         "padding 1 (SAME) or 2 (VALID) and positive strides")
    _, height, width, _ = (int(d) for d in self.get_tensor_shape(data))
    _, kh, kw, _ = (int(d) for d in self.get_tensor_shape(weights))
    (top, bottom), (left, right) = (transpose_conv_bias_padding(padding == _SAME, *dims) for dims in
                                    ((height, kh, stride_h), (width, kw, stride_w)))
    kernel = relax.op.permute_dims(self.get_tensor_expr(weights), [3, 0, 1, 2])  # OHWI -> IOHW
    y = relax.op.nn.conv2d_transpose(self.get_tensor_expr(data), kernel, strides=(stride_h, stride_w),
                                     padding=(top, left, bottom, right), data_layout="NHWC", kernel_layout="IOHW")
    return relax.op.add(y, self.get_tensor_expr(bias))


#: Custom code -> ``converter(self, op) -> Relax expr`` (a method of :class:`CustomOpConverter`).
CUSTOM_OPS: dict[str, Callable[[OperatorConverter, Any], relax.Expr]] = {
    "Convolution2DTransposeBias": _transpose_conv_bias,
}


class CustomOpConverter(OperatorConverter):
    """TVM's TFLite converter that also converts the custom ops of :data:`CUSTOM_OPS`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for code, convert in CUSTOM_OPS.items():
            self.convert_map[code] = lambda op, convert=convert: convert(self, op)

    def get_op_code_str(self, op: Any) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        custom = code.CustomCode()
        if custom is not None and custom.decode("utf-8", "replace") in CUSTOM_OPS:
            return custom.decode("utf-8")
        return super().get_op_code_str(op)
