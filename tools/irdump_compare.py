"""Compare two folders written by the ``tools/irdump.py`` pytest plugin (see its docstring).

Prints how many modules are structurally identical, how many run outputs are identical, and
every difference. Tests moved to another folder are matched by their file and test name.
Exit status 1 when any output differs.
"""

from __future__ import annotations

import os
import re
import sys

import numpy as np

_FOLDER = re.compile(r"^tests_(?:[a-z]+(?:_[a-z]+)?_)?(?=test_)")


def _key(name: str) -> str:
    return _FOLDER.sub("tests_", name)


def main(base_dir: str, new_dir: str) -> int:
    base = {_key(f): f for f in os.listdir(base_dir)}
    new = {_key(f): f for f in os.listdir(new_dir)}
    common = sorted(set(base) & set(new))
    print(f"modules: {sum(k.endswith('.hash') for k in base)} before, {sum(k.endswith('.hash') for k in new)} after, "
          f"{sum(k.endswith('.hash') for k in common)} matched")
    same_ir = diff_ir = same_out = 0
    differ = []
    for key in common:
        a, b = os.path.join(base_dir, base[key]), os.path.join(new_dir, new[key])
        if key.endswith(".hash"):
            with open(a, encoding="utf-8") as ha, open(b, encoding="utf-8") as hb:
                equal = ha.read() == hb.read()
            same_ir, diff_ir = same_ir + equal, diff_ir + (not equal)
        elif key.endswith(".npz"):
            x, y = np.load(a), np.load(b)
            if x.files == y.files and all(np.array_equal(x[k], y[k]) and x[k].dtype == y[k].dtype for k in x.files):
                same_out += 1
            else:
                differ.append(key)
    print(f"structurally identical: {same_ir}, different: {diff_ir}; run outputs identical: {same_out}, "
          f"different: {len(differ)}")
    for key in differ:
        print(f"  outputs differ: {key}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
