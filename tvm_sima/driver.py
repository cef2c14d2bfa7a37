""":func:`tvm_sima.build`: bind the weights, offload to the sima codegen, compile with the ``"sima"`` pipeline."""

from __future__ import annotations

from typing import Any, Optional

import tvm
from tvm import relax
from tvm.target import Target

from .codegen.byoc import CODEGEN, offloaded_functions, partition_for_sima
from .params import bind_params, unbound_weights
from .passes.pipeline import PIPELINE
from .quantize_info import RecordQuantizeInfo
from .targets import target as sima_target

__all__ = ["build"]


def _bind(mod: tvm.IRModule, params: Optional[dict]) -> tvm.IRModule:
    if params:
        mod = bind_params(mod, params)
    missing = unbound_weights(mod)
    if missing:
        listed = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"build: main has {len(missing)} unbound weight parameter(s) ({listed}); pass the "
                         "params that load_model returned: tvm_sima.build(mod, params=params)")
    return mod


def _offload(mod: tvm.IRModule, artifact_dir: Optional[str]) -> tvm.IRModule:
    """Partition for the NPU and run the sima codegen (``mod`` unchanged when nothing is offloaded)."""
    recorded = RecordQuantizeInfo()(mod)  # type: ignore[operator]  # before partitioning: the regions' records stay readable
    partitioned = partition_for_sima(recorded)
    if not offloaded_functions(partitioned):
        return mod
    options = {"artifact_dir": str(artifact_dir)} if artifact_dir is not None else {}
    mod = relax.transform.RunCodegen({CODEGEN: options})(partitioned)
    if mod.attrs is not None and "const_name_to_constant" in mod.attrs:
        mod = mod.without_attr("const_name_to_constant")  # the kernels hold their weights
    return mod


def build(mod: tvm.IRModule, target: Optional[Target] = None, *, params: Optional[dict] = None,
          artifact_dir: Optional[str] = None, offload: bool = True, **kwargs: Any) -> Any:
    """Partition for the NPU, run the ``relax.ext.sima`` codegen, compile with the ``"sima"`` pipeline.

    ``params`` (name -> array, as :func:`tvm_sima.load_model` returns them) are bound into ``main``
    first, as Relay's ``relay.build(mod, target, params=params)`` did; a ``main`` whose weight
    parameters (those after its ``num_input`` data inputs) are still unbound is a ``ValueError``
    naming them.

    ``offload=True`` (default): every ``sima.conv2d`` / ``sima.dense`` / ``sima.requantize`` the NPU
    can run goes to the sima codegen (``tvm_sima.codegen.partition_for_sima``): C++ kernels compiled
    with the host code (g++ is needed when the VM is created and by ``export_library``), and, with
    ``artifact_dir``, one program artifact per offloaded region written there. ``offload=False``:
    the pure-TIR route (every op legalized to TIR); both give the same integers.

    Returns the executable; run it with ``relax.VirtualMachine(ex, tvm.cpu())``.
    """
    if not isinstance(mod, tvm.IRModule):
        raise TypeError(f"build expects a tvm.IRModule, got {type(mod).__name__}")
    mod = _bind(mod, params)
    if offload:
        mod = _offload(mod, artifact_dir)
    elif artifact_dir is not None:
        raise ValueError("build: artifact_dir needs offload=True (artifacts describe offloaded regions)")
    return tvm.compile(mod, target=target or sima_target(), relax_pipeline=PIPELINE, **kwargs)
