"""The sima codegen: partitioning, ``relax.ext.sima`` (C++ kernels), the program artifact.

* :func:`partition_for_sima` and the ``relax.ext.sima`` codegen (:mod:`.byoc`), run by
  ``tvm_sima.build``;
* the program artifact (graph JSON + weights, :mod:`.artifact`) the codegen writes per offloaded
  region, :func:`load_program`, and :func:`run_program`, its NumPy interpreter;
* the C++ kernels (:mod:`.csource`).
"""

from .artifact import (  # noqa: I001 (byoc registers relax.ext.sima on import)
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
from .byoc import offloaded_functions, partition_for_sima

__all__ = ["FORMAT", "VERSION", "NUMPY_OPS", "Program", "ProgramError", "load_program", "offloaded_functions",
           "partition_for_sima", "program_from_function", "run_program", "write_program"]
