"""The sima codegen side: the program artifact (graph JSON + weights) and its NumPy interpreter.

The BYOC codegen ``relax.ext.sima`` (partitioning, C++ kernels, ``tvm_sima.build`` offload) is
the next step; :func:`program_from_function` already writes the artifact of any Relax function
of sima ops, e.g. a module from ``tvm_sima.convert``.
"""

from .artifact import (
    FORMAT,
    NUMPY_OPS,
    VERSION,
    Program,
    ProgramError,
    load_program,
    program_from_function,
    run_program,
    write_program,
)

__all__ = ["FORMAT", "VERSION", "NUMPY_OPS", "Program", "ProgramError", "load_program", "program_from_function",
           "run_program", "write_program"]
