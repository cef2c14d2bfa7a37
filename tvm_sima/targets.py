"""The sima target: an LLVM CPU target whose keys say ``sima`` (legalizations may branch on it).

A new target *kind* would need C++; keys and a registered tag do not. ``sima/mla`` is the tag.

The CPU is this machine's by default (:func:`host_cpu`): LLVM's name for it (``haswell``,
``znver3``, ``icelake-server``, ...), so the generated code uses its vector units (AVX2, FMA,
AVX-512 where present) instead of generic x86-64 (SSE2). The environment variable
:data:`MCPU_ENV` or ``target(mcpu=...)`` overrides it; ``"generic"`` gives the portable code.
A program built here runs on CPUs with at least this one's features.
"""

from __future__ import annotations

import os
from typing import Optional

from tvm.target import Target

__all__ = ["MCPU_ENV", "TAG", "host_cpu", "target", "use_all_cores"]

#: Registered target tag: ``Target("sima/mla")`` gives the default sima target.
TAG = "sima/mla"
#: Environment variable naming the LLVM CPU to generate code for (default: :func:`host_cpu`).
MCPU_ENV = "TVM_SIMA_MCPU"


def host_cpu() -> str:
    """The LLVM CPU to generate for: ``$TVM_SIMA_MCPU`` if set, else LLVM's name for this machine's CPU.

    ``"generic"`` when LLVM does not know the CPU. A name LLVM rejects is a ``ValueError``.
    """
    from tvm.target.codegen import llvm_get_system_cpu, llvm_get_system_triple, llvm_is_valid_cpu

    triple = llvm_get_system_triple()
    name = os.environ.get(MCPU_ENV, "").strip()
    if not name:
        name = str(llvm_get_system_cpu())
        return name if name and llvm_is_valid_cpu(name, triple) else "generic"
    if not llvm_is_valid_cpu(name, triple):
        raise ValueError(f"{MCPU_ENV}={name!r} is not a CPU LLVM knows; unset it, or use an LLVM "
                         "CPU name (llc -mcpu=help lists them), e.g. haswell, skylake-avx512, znver3")
    return name


def _config(mcpu: Optional[str], num_cores: Optional[int]) -> dict:
    config: dict = {"kind": "llvm", "keys": ["sima", "cpu"]}
    mcpu = mcpu or host_cpu()
    if mcpu != "generic":
        config["mcpu"] = mcpu
    config["num-cores"] = int(num_cores or os.cpu_count() or 1)
    return config


def target(mcpu: Optional[str] = None, num_cores: Optional[int] = None) -> Target:
    """The sima host-simulation target: LLVM for this CPU, keys ``["sima", "cpu"]``.

    Parameters
    ----------
    mcpu : str, optional
        LLVM CPU name (e.g. ``"haswell"``, ``"skylake-avx512"``; ``"generic"``: portable x86-64);
        default: :func:`host_cpu` (``$TVM_SIMA_MCPU``, else this machine's CPU).
    num_cores : int, optional
        Threads the generated code may use; default: every core of this machine.
    """
    return Target(_config(mcpu, num_cores))


def use_all_cores() -> int:
    """Let TVM's thread pool use every usable CPU; returns the thread count.

    TVM's runtime defaults to ``hardware_concurrency() / 2`` threads (it assumes hyper-threads):
    one thread on a 2-vCPU machine, so parallel loops ran serially (measured: CPU time equal to
    wall time). The pool reads ``TVM_NUM_THREADS`` when it starts, at the first parallel call,
    so this runs on import; a value the user set is kept.
    """
    if "TVM_NUM_THREADS" not in os.environ:
        os.environ["TVM_NUM_THREADS"] = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                            else os.cpu_count() or 1)
    return int(os.environ["TVM_NUM_THREADS"])


def _register_tag() -> None:
    from tvm.target.tag import list_tags, register_tag

    if TAG not in list_tags():
        register_tag(TAG, _config(None, None))


_register_tag()
use_all_cores()
