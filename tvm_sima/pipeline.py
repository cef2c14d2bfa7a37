"""``tvm_sima.pipeline``: the names of the ``"sima"`` pipeline and of :func:`build`, at their old address.

The pipeline is defined (and registered) in :mod:`tvm_sima.passes.pipeline`, ``build`` in
:mod:`tvm_sima.driver`; this module only gathers them, and nothing in tvm_sima imports it.
"""

from __future__ import annotations

from .driver import build
from .passes.pipeline import PIPELINE, PRE_FOLD_PASSES, SCHEDULE_PASSES, sima_pipeline

__all__ = ["PIPELINE", "PRE_FOLD_PASSES", "SCHEDULE_PASSES", "sima_pipeline", "build"]
