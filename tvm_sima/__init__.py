"""tvm-sima: post-training quantization and an NPU converter on Apache TVM (Relax).

``tvm_sima.math`` is pure NumPy and importable without TVM. The graph-level API (ops,
target, pipeline, build, quantize_info) imports TVM on first use::

    import tvm_sima
    mod, params = tvm_sima.load_model("model.onnx")
    ex = tvm_sima.build(mod, params=params)    # the "sima" pipeline on tvm_sima.target()
    infos = tvm_sima.read_quantize_info(ex)    # tensor name -> QuantizeInfo
"""

from __future__ import annotations

import importlib
from typing import Any

from . import _defer_torch

__version__ = "0.1.0"

_defer_torch.install()  # `import tvm` loads no torch (apache-tvm-ffi would import it whenever installed)

# Public name -> module that defines it; imported lazily so that `import tvm_sima.math`
# never loads TVM.
_LAZY = {
    "target": "tvm_sima.targets",
    "build": "tvm_sima.driver",
    "sima_pipeline": "tvm_sima.passes.pipeline",
    "read_quantize_info": "tvm_sima.quantize_info",
    "QuantizeInfo": "tvm_sima.quantize_info",
    "ops": "tvm_sima.ops",
    "load_model": "tvm_sima.frontends.loader",
    "bind_params": "tvm_sima.params",
    "InputShapeError": "tvm_sima.frontends.loader",
    "DynamicShapeError": "tvm_sima.frontends.loader",
    "UnsupportedOpsError": "tvm_sima.frontends.loader",
    "CorruptModelError": "tvm_sima.frontends.errors",
    "qconfig": "tvm_sima.config",
    "current_qconfig": "tvm_sima.config",
    "QConfig": "tvm_sima.config",
    "quantize": "tvm_sima.ptq",
    "convert": "tvm_sima.converter",
    "quantize_report": "tvm_sima.quantize_info",
    "quantize_plan": "tvm_sima.ptq",
    "codegen": "tvm_sima.codegen",
    "partition_for_sima": "tvm_sima.codegen.byoc",
}

#: Modules of `_LAZY` that import no TVM; every other name first loads `tvm_sima._register`.
_WITHOUT_TVM = frozenset({"tvm_sima.config", "tvm_sima.frontends.errors", "tvm_sima.frontends.loader"})

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        if _LAZY[name] not in _WITHOUT_TVM:
            importlib.import_module("tvm_sima._register")  # the sima ops, target tag, pipeline, codegen
        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__ == f"tvm_sima.{name}" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tvm_sima' has no attribute {name!r}")
