"""Output directories of the command line: written whole, or not at all.

A command that writes ``--output DIR`` writes into a new temporary directory beside it
(``PARENT/.DIR.tmp-XXXXXXXX``) and, only when everything is written, renames it to ``DIR``. On any
failure (an error, Ctrl-C) the temporary directory is removed, and so are the parent directories
the run created: ``DIR`` is untouched.

Policy for an existing ``DIR``:

* a file (or anything but a directory): refused;
* an empty directory, or one holding only what tvm-sima commands write (:data:`OWN_NAMES`: an
  earlier run's output): replaced as a whole when the run succeeds (the old directory is renamed
  aside, the new one renamed in, the old one deleted);
* a directory holding anything else: refused, so that ``--output .`` or a typo never deletes a
  user's files.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from typing import Iterator, Union

from .cli_errors import CliError

__all__ = ["OWN_NAMES", "OutputError", "staged_output"]

#: What the commands write into an output directory (an existing directory holding only these is replaced).
OWN_NAMES = frozenset({"model.so", "artifacts", "layers.json", "statistics.npz", "qconfig.json", "report.json",
                       "per_layer.json", "report.html", "convert_report.json"})


class OutputError(CliError):
    """An ``--output`` path the command cannot write to; the message says why and what to do."""


def _check_target(shown: str, final: pathlib.Path) -> None:
    if final.exists() and not final.is_dir():
        raise OutputError(f"--output {shown} is a file, not a directory; give the path of a directory to create "
                          "(or of an earlier run's output, which is replaced)")
    if final.is_dir():
        foreign = sorted(p.name for p in final.iterdir() if p.name not in OWN_NAMES)
        if foreign:
            listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise OutputError(f"--output {shown} already holds files tvm-sima did not write ({listed}); give a new "
                              "or empty directory, or an earlier run's output (its content is replaced)")
    if not final.name:
        raise OutputError(f"--output {shown}: give a directory below the file system root")


def _make_parents(parent: pathlib.Path, shown: str) -> list[pathlib.Path]:
    """Create the missing ancestors of the output; returns them, deepest first."""
    missing = []
    for folder in [parent, *parent.parents]:
        if folder.exists():
            if not folder.is_dir():
                raise OutputError(f"--output {shown}: {folder} is a file, not a directory")
            break
        missing.append(folder)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _remove_empty(missing)
        raise OutputError(f"--output {shown}: cannot create {parent} ({err.strerror or err})") from None
    return missing


def _remove_empty(folders: list[pathlib.Path]) -> None:
    for folder in folders:  # deepest first
        with contextlib.suppress(OSError):
            folder.rmdir()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _commit(staging: pathlib.Path, final: pathlib.Path) -> None:
    """Rename ``staging`` to ``final``, replacing an existing ``final`` directory."""
    staging.chmod(0o777 & ~_umask())  # mkdtemp's 0700 -> what mkdir would have made
    if not final.is_dir():
        os.rename(staging, final)
        return
    old = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    os.rename(final, old)  # onto the empty directory just made (POSIX rename replaces an empty directory)
    try:
        os.rename(staging, final)
    except OSError:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_output(target: Union[str, os.PathLike]) -> Iterator[pathlib.Path]:
    """A temporary directory to write into, renamed to ``target`` when the block succeeds.

    Parameters
    ----------
    target : path
        The output directory (``--output``); see the module docstring for an existing one.

    Yields
    ------
    pathlib.Path
        The staging directory (same parent as ``target``, so the final rename is atomic).

    Raises
    ------
    OutputError
        ``target`` is a file or a directory with other files, or its parent cannot be written.
    """
    shown = os.fspath(target)
    final = pathlib.Path(os.path.realpath(shown))  # a symlink to a directory: write where it points
    _check_target(shown, final)
    created = _make_parents(final.parent, shown)
    try:
        staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    except OSError as err:
        _remove_empty(created)
        raise OutputError(f"--output {shown}: cannot write in {final.parent} ({err.strerror or err})") from None
    try:
        yield staging
        _check_target(shown, final)  # again: something may have appeared there during the run
        _commit(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise
