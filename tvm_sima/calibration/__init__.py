"""Calibration: streaming observers (and, in later work, dataset handling)."""

from .observers import (
    OBSERVERS,
    Observer,
    StreamingHistogram,
    make_observer,
    register_observer,
)
from .statistics import load_statistics, save_statistics

__all__ = [
    "OBSERVERS",
    "Observer",
    "StreamingHistogram",
    "load_statistics",
    "make_observer",
    "register_observer",
    "save_statistics",
]
