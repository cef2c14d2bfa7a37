"""Loading models: ONNX and TFLite files into Relax (:mod:`.loader`), and the TFLite flatbuffer reader.

A truncated, corrupt or inconsistent model file raises :class:`CorruptModelError` (a ``ValueError``).
"""

from .errors import CorruptModelError

__all__ = ["CorruptModelError"]
