"""Everything tvm-sima registers with TVM, in one place; the package face imports it.

Each name is registered by the module that defines it, on import (idempotently); importing this
module makes them all known at once. ``tvm_sima.<name>`` loads it before any name that needs TVM,
so ``tvm.compile(mod, target=tvm_sima.target(), relax_pipeline="sima")`` always finds the pipeline.
A program that imports submodules only (``import tvm_sima.ops``) and wants these names without
touching ``tvm_sima.<name>`` imports ``tvm_sima._register`` itself.

=============================  ===================================  ==============================
registered with TVM            what                                 defined in
=============================  ===================================  ==============================
``sima.*`` Relax ops           quantize, requantize, conv2d, ...    :mod:`tvm_sima.ops`
target tag ``sima/mla``        the host-simulation target           :mod:`tvm_sima.targets`
``relax_pipeline="sima"``      the compile pipeline                 :mod:`tvm_sima.passes.pipeline`
``relax.ext.sima``             the BYOC codegen (``RunCodegen``)    :mod:`tvm_sima.codegen.byoc`
=============================  ===================================  ==============================
"""

from __future__ import annotations

from . import ops, targets  # noqa: F401  (the sima.* ops; the sima/mla tag)
from .codegen import byoc  # noqa: F401  (relax.ext.sima)
from .passes import pipeline  # noqa: F401  (relax_pipeline="sima")

__all__: list[str] = []
