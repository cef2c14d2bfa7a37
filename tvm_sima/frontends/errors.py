"""The one error a broken model file raises, and a guard that turns an importer's failure into it.

Every reader of a model file (the TFLite flatbuffer reader, the ONNX protobuf checks, the calls into
TVM's importers) reports a truncated, corrupt or inconsistent file as :class:`CorruptModelError`,
a ``ValueError`` with a one-line message that names the file and what is wrong::

    model.tflite: truncated or corrupt model file (subgraph 0, tensor 3, Shape: vector at offset 9000
    beyond the end of the file of 4504 bytes)
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Iterator
from typing import Union

from ..messages import one_line

__all__ = ["MAX_ELEMENTS", "CorruptModelError", "importer_errors", "one_line"]

#: The most elements a model file may declare for one tensor: TVM indexes in int32 below it, and a
#: declared shape beyond it (8 GB of int8) is a corrupt file — building it would exhaust memory.
MAX_ELEMENTS = 2**31 - 1


class CorruptModelError(ValueError):
    """A model file that is truncated, corrupt or inconsistent; ``what`` says where and how.

    Parameters
    ----------
    path : str or PathLike
        The file (or a description such as ``"the given bytes"``).
    what : str
        What is wrong, on one line.
    lead : str
        What the message says first (a reader that cannot even decode the file says so).
    """

    def __init__(self, path: Union[str, os.PathLike], what: str, lead: str = "truncated or corrupt model file") -> None:
        self.path = os.fspath(path)
        self.what = one_line(what)
        super().__init__(f"{self.path}: {lead} ({self.what})")


@contextlib.contextmanager
def importer_errors(path: Union[str, os.PathLike], importer: str) -> Iterator[None]:
    """Re-raise any exception of the block as :class:`CorruptModelError` naming ``importer``.

    For calls into TVM's importers on a file the readers here have validated: what still fails
    is a file that is inconsistent in a way the checks do not cover, or a form the importer
    cannot take. Errors that are already ``CorruptModelError`` pass unchanged.
    """
    try:
        yield
    except CorruptModelError:
        raise
    except Exception as err:  # noqa: BLE001 - an importer fails in many ways; one message for all
        at = _failing_node(err)
        # The file passed our checks: say that the import failed, not that the file is corrupt.
        raise CorruptModelError(path, f"{importer} failed{at}: {type(err).__name__}: {one_line(err)}",
                                lead="the model uses a form the importer does not support, or is inconsistent in "
                                     "a way the file checks do not cover") from None


def _failing_node(err: BaseException) -> str:
    """" at node 'x' (Conv)" / " at op 3 (CONV_2D)": the node TVM's importer was converting, read from
    the locals of its conversion loop (``_construct_nodes`` / ``convert_op_to_relax`` /
    ``_translate_fx_graph``), or ``""``."""
    found = ""
    for frame, _ in traceback.walk_tb(err.__traceback__):
        local = frame.f_locals
        if frame.f_code.co_name == "_construct_nodes" and hasattr(local.get("node"), "op_type"):
            node = local["node"]
            found = f" at node '{node.name or (node.output[0] if node.output else '?')}' ({node.op_type})"
        elif frame.f_code.co_name == "convert_op_to_relax" and "op_idx" in local:
            found = f" at op {local['op_idx']} ({local.get('op_code_str', '?')})"
        elif frame.f_code.co_name == "_translate_fx_graph" and hasattr(local.get("node"), "target"):
            found = f" at node '{local['node'].name}' ({local['node'].target})"  # TVM's PyTorch importer
    return found
