"""Relax and TIR passes of tvm-sima (the design card's relay_passes)."""

from .annotate import (
    ANNOTATE_FUNCTIONS,
    AnnotateContext,
    annotate,
    attach_simulated_quantize,
    register_annotate_function,
)
from .calibrate import calibrate, calibration_graph
from .schedule import CPUParallelSchedule
from .transforms import Annotate, Convert, Realize

__all__ = [
    "ANNOTATE_FUNCTIONS",
    "Annotate",
    "AnnotateContext",
    "CPUParallelSchedule",
    "Convert",
    "Realize",
    "annotate",
    "attach_simulated_quantize",
    "calibrate",
    "calibration_graph",
    "register_annotate_function",
]
