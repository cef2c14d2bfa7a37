"""The sima target: an LLVM CPU target whose keys say ``sima`` (legalizations may branch on it).

A new target *kind* would need C++; keys and a registered tag do not. ``sima/mla`` is the tag.
"""

from __future__ import annotations

import os
from typing import Optional

from tvm.target import Target

__all__ = ["TAG", "target", "use_all_cores"]

#: Registered target tag: ``Target("sima/mla")`` gives the default sima target.
TAG = "sima/mla"


def _config(mcpu: Optional[str], num_cores: Optional[int]) -> dict:
    config: dict = {"kind": "llvm", "keys": ["sima", "cpu"]}
    if mcpu:
        config["mcpu"] = mcpu
    config["num-cores"] = int(num_cores or os.cpu_count() or 1)
    return config


def target(mcpu: Optional[str] = None, num_cores: Optional[int] = None) -> Target:
    """The sima host-simulation target: LLVM for this CPU, keys ``["sima", "cpu"]``.

    Parameters
    ----------
    mcpu : str, optional
        LLVM CPU name (e.g. ``"skylake-avx512"``); default: LLVM's generic CPU.
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
