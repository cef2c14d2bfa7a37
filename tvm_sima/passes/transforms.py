"""Module passes around annotate, realize and convert, to compose with TVM's in ``Sequential``.

::

    annotate_pass = Annotate(config)
    amod = tvm.transform.Sequential([relax.transform.CanonicalizeBindings(), annotate_pass])(mod)
    layers = annotate_pass.layers            # what the last run found

Each pass is a :func:`tvm.transform.module_pass` class: the object is a ``tvm.transform.Pass``,
and the attributes of its Python instance stay readable on it. A run stores its second result
(``Annotate.layers``, ``Realize.report``, ``Convert.report``) there; it is ``None`` before the
first run and is replaced by each run (one pass object, one result: use one object per module
when you need every report). The functions are imported when the pass runs, so that this module
imports neither the converter nor realize.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import tvm

if TYPE_CHECKING:
    from ..calibration import Observer
    from ..config import LayerInfo, QConfig
    from ..converter import ConversionReport, HardwareLimits
    from .realize_report import RealizeReport

__all__ = ["Annotate", "Convert", "Realize"]


@tvm.transform.module_pass(opt_level=0, name="sima.Annotate")
class Annotate:
    """:func:`tvm_sima.passes.annotate` as a pass; ``.layers`` is the last run's layer list.

    ``config`` defaults to :func:`tvm_sima.current_qconfig` when the pass runs.
    """

    def __init__(self, config: Optional["QConfig"] = None) -> None:
        self.config = config
        self.layers: Optional[list["LayerInfo"]] = None

    def transform_module(self, mod: tvm.IRModule, _ctx: Any) -> tvm.IRModule:
        from .annotate import annotate

        out, self.layers = annotate(mod, self.config)
        return out


@tvm.transform.module_pass(opt_level=0, name="sima.Realize")
class Realize:
    """:func:`tvm_sima.passes.realize.realize` as a pass; ``.report`` is the last run's RealizeReport."""

    def __init__(self, observers: dict[str, "Observer"], config: "QConfig",
                 layers: Optional[list["LayerInfo"]] = None) -> None:
        self.observers, self.config, self.layers = observers, config, layers
        self.report: Optional["RealizeReport"] = None

    def transform_module(self, mod: tvm.IRModule, _ctx: Any) -> tvm.IRModule:
        from .realize import realize

        out, self.report = realize(mod, self.observers, self.config, self.layers)
        return out


@tvm.transform.module_pass(opt_level=0, name="sima.Convert")
class Convert:
    """:func:`tvm_sima.convert` as a pass; ``.report`` is the last run's ConversionReport.

    ``limits`` defaults to the converter's ``DEFAULT_LIMITS``.
    """

    def __init__(self, mode: str = "tflite", limits: Optional["HardwareLimits"] = None) -> None:
        self.mode, self.limits = mode, limits
        self.report: Optional["ConversionReport"] = None

    def transform_module(self, mod: tvm.IRModule, _ctx: Any) -> tvm.IRModule:
        from ..converter import convert
        from ..converter.rules import DEFAULT_LIMITS

        limits = DEFAULT_LIMITS if self.limits is None else self.limits
        out, self.report = convert(mod, self.mode, limits=limits)
        return out
