"""Keep ``import tvm`` from loading torch: TVM 0.27 imports torch whenever it is installed.

apache-tvm-ffi 0.1.15 (TVM 0.27's FFI) starts its ``__init__`` with ``import torch`` (its comment:
"to avoid a potential symbol conflict", seen on Windows, Python 3.12, torch 2.9), and
``tvm.relax`` imports ``tvm.relax.base_py_module``, which imports ``torch.utils.dlpack``. With the
``torch`` extra installed, every process that imports TVM would load torch: ``import tvm`` takes
1.3 s without it and 3.6-4.3 s with it (docs/tvm027_findings.md), for the ONNX and TFLite routes,
which never use torch.

:func:`install` (run by ``import tvm_sima``, before anything imports TVM) adds an import hook under
which ``import torch`` fails, as if torch were absent, *only while one of those two modules
initializes*; both handle that (``except ImportError``) and skip only their optional torch extras
(tvm_ffi converting a ``torch.dtype`` and patching in a DLPack exchange API torch 2.13 has;
``BasePyModule``'s legacy ``to_dlpack``). torch imports normally afterwards: the torch frontend,
or the user. Nothing is done when torch or tvm_ffi is already
imported, or with ``TVM_SIMA_TORCH_FIRST=1`` in the environment (tvm_ffi's own order).
"""

from __future__ import annotations

import importlib.abc
import os
import sys
from typing import Any, Optional, Sequence

__all__ = ["install"]

#: Environment variable that keeps tvm_ffi's own behaviour (torch first).
TORCH_FIRST_ENV = "TVM_SIMA_TORCH_FIRST"


#: The modules whose initialization imports torch when it can.
EAGER = ("tvm_ffi", "tvm.relax.base_py_module")


def _initializing(name: str) -> bool:
    module = sys.modules.get(name)
    return module is not None and bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


class _TorchWhileTvmStarts(importlib.abc.MetaPathFinder):
    """``import torch`` raises ImportError while a module of :data:`EAGER` initializes; nothing else changes."""

    def find_spec(self, name: str, path: Optional[Sequence[str]], target: Any = None) -> None:
        if name.split(".")[0] == "torch" and any(_initializing(m) for m in EAGER):
            raise ImportError(f"{name}: not imported while TVM initializes (tvm_sima/_defer_torch.py)")
        return None


def install() -> None:
    """Add the hook (once) unless torch or tvm_ffi is loaded already or ``TVM_SIMA_TORCH_FIRST=1``."""
    if "torch" in sys.modules or "tvm_ffi" in sys.modules or os.environ.get(TORCH_FIRST_ENV, "") not in ("", "0"):
        return
    if not any(isinstance(f, _TorchWhileTvmStarts) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchWhileTvmStarts())
