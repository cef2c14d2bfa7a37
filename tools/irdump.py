"""pytest plugin: record every module ``realize`` and ``convert`` return, to check a refactor changes nothing.

For each such module (keyed by the test that made it and a counter) it writes the structural hash
of ``main`` and, with ``IRDUMP_RUN=1``, the outputs of the module built with ``offload=False`` on
seeded random inputs (uniform [0, 1) floats, full-range integers). Run the suite at two revisions
and compare the two folders with ``tools/irdump_compare.py``::

    git archive BASE | tar -x -C /tmp/base && ln -s $PWD/.venv /tmp/base/.venv
    (cd /tmp/base && IRDUMP_RUN=1 IRDUMP_DIR=/tmp/ir_base PYTHONPATH=/tmp/base:$OLDPWD/tools \\
        .venv/bin/python -m pytest -q -p irdump -p no:cacheprovider tests)
    IRDUMP_RUN=1 IRDUMP_DIR=/tmp/ir_new PYTHONPATH=$PWD:$PWD/tools .venv/bin/python -m pytest -q -p irdump tests
    .venv/bin/python tools/irdump_compare.py /tmp/ir_base /tmp/ir_new
"""

from __future__ import annotations

import collections
import os
import re

import numpy as np

_COUNT: collections.Counter = collections.Counter()


def _inputs(mod, rng: np.random.Generator) -> list:
    args = []
    for param in mod["main"].params:
        shape, dtype = [int(d) for d in param.ty.shape], str(param.ty.dtype)
        if dtype.startswith(("int", "uint")):
            info = np.iinfo(dtype)
            args.append(rng.integers(info.min, info.max + 1, size=shape).astype(dtype))
        else:
            args.append(rng.uniform(0, 1, size=shape).astype(dtype))
    return args


def _dump(kind: str, mod) -> None:
    import tvm
    import tvm_ffi
    from tvm import relax

    import tvm_sima

    test = os.environ.get("PYTEST_CURRENT_TEST", "none").split(" ")[0]
    key = re.sub(r"[^A-Za-z0-9_.-]", "_", test)[-150:]
    _COUNT[key] += 1
    base = os.path.join(os.environ["IRDUMP_DIR"], f"{key}.{_COUNT[key]:02d}.{kind}")
    with open(base + ".hash", "w", encoding="utf-8") as handle:
        handle.write(str(tvm_ffi.structural_hash(mod["main"])))
    if os.environ.get("IRDUMP_RUN") != "1":
        return
    try:
        vm = relax.VirtualMachine(tvm_sima.build(mod, offload=False), tvm.cpu())
        result = vm["main"](*[tvm.runtime.tensor(a) for a in _inputs(mod, np.random.default_rng(7))])
        outputs = [result] if hasattr(result, "numpy") else list(result)
        np.savez(base + ".npz", *[o.numpy() for o in outputs])
    except Exception as err:  # noqa: BLE001 - recorded: both revisions must fail alike
        with open(base + ".err", "w", encoding="utf-8") as handle:
            handle.write(f"{type(err).__name__}: {str(err)[:300]}")


def pytest_configure(config) -> None:  # noqa: ARG001 - pytest's hook signature
    import tvm_sima._register  # noqa: F401
    import tvm_sima.converter as converter
    import tvm_sima.passes.realize as realize_module

    realize, convert = realize_module.realize, converter.convert

    def recorded_realize(*args, **kwargs):
        mod, report = realize(*args, **kwargs)
        _dump("realize", mod)
        return mod, report

    def recorded_convert(*args, **kwargs):
        mod, report = convert(*args, **kwargs)
        _dump("convert", mod)
        return mod, report

    realize_module.realize, converter.convert = recorded_realize, recorded_convert
