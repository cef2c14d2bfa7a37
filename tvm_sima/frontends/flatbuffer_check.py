"""Verify a TFLite flatbuffer's layout before anything reads it lazily.

The ``tflite`` package (and TVM's TFLite importer, which uses it) reads a flatbuffer lazily: a bad
offset shows up as a ``struct.error`` deep inside whichever accessor touches it first. Here every
table, vtable, vector, string and union of the model is visited once, through the package's own
generated accessors, with each table's reader replaced by :class:`_CheckedTable`, which bounds-checks
every read. After :func:`verify_tflite` passes, no accessor of the file can read outside it.

Layout rules checked (the FlatBuffers binary format):

* the root offset, each table's ``soffset`` to its vtable, and each vtable (its size even and at
  least 4, the object size at least 4) lie inside the file; every field offset is 0 or inside the
  object;
* every ``uoffset`` (to a table, vector or string) points inside the file, and every vector's
  (and string's) elements end inside it.
"""

from __future__ import annotations

import functools
import inspect
import struct
from typing import Any

import flatbuffers

__all__ = ["LayoutError", "verify_tflite"]

#: Union fields: (table class, accessor) -> the tflite enum naming the member's table class.
_UNIONS = {
    ("Operator", "BuiltinOptions"): "BuiltinOptions",
    ("Operator", "BuiltinOptions2"): "BuiltinOptions2",
    ("QuantizationParameters", "Details"): "QuantizationDetails",
    ("DimensionMetadata", "ArraySegments"): "SparseIndexVector",
    ("DimensionMetadata", "ArrayIndices"): "SparseIndexVector",
}
_SKIP_SUFFIXES = ("AsNumpy", "Length", "IsNone", "BufferHasIdentifier")


class LayoutError(Exception):
    """A read outside the file or a malformed table; the caller adds the file name and the location."""


def _inside(n: int, off: int, size: int, what: str) -> None:
    """``size`` bytes at ``off`` lie in a file of ``n`` bytes, else a :class:`LayoutError` saying so."""
    if off < 0:
        raise LayoutError(f"{what}: offset {off} before the start of the file")
    if off + size > n:
        raise LayoutError(f"{what}: {size} bytes at offset {off} beyond the end of the file of {n} bytes")


class _CheckedTable(flatbuffers.table.Table):
    """A ``flatbuffers`` table whose every read is checked against the end of the buffer."""

    __slots__ = ()

    def _need(self, off: int, size: int, what: str) -> None:
        _inside(len(self.Bytes), off, size, what)

    def _target(self, off: int, what: str) -> int:
        self._need(off, 4, f"{what} offset")
        target = off + struct.unpack_from("<I", self.Bytes, off)[0]
        self._need(target, 4, what)
        return target

    def Get(self, flags: Any, off: int) -> Any:  # noqa: N802 - flatbuffers' names
        self._need(off, flags.bytewidth, "field")
        return super().Get(flags, off)

    def Indirect(self, off: int) -> int:  # noqa: N802
        return self._target(off, "table")

    def String(self, off: int) -> bytes:  # noqa: N802
        start = self._target(off, "string")
        length = struct.unpack_from("<I", self.Bytes, start)[0]
        self._need(start + 4, length, f"string of {length} bytes at {start}")
        return super().String(off)

    def VectorLen(self, off: int) -> int:  # noqa: N802
        start = self._target(off + self.Pos, "vector")
        length = struct.unpack_from("<I", self.Bytes, start)[0]
        self._need(start + 4, length, f"vector of {length} elements at {start}")
        return length

    def Vector(self, off: int) -> int:  # noqa: N802
        return self._target(off + self.Pos, "vector") + 4

    def Union(self, t2: Any, off: int) -> None:  # noqa: N802
        self._target(off + self.Pos, "union table")
        super().Union(t2, off)

    def GetVectorAsNumpy(self, flags: Any, off: int) -> Any:  # noqa: N802
        length = self.VectorLen(off)
        start = self.Vector(off)
        self._need(start, length * flags.bytewidth, f"vector of {length} x {flags.bytewidth} bytes at {start - 4}")
        return super().GetVectorAsNumpy(flags, off)


def _check_header(buf: bytes, pos: int) -> None:
    """The table at ``pos``: its vtable and object lie in ``buf``, its field offsets in the object."""
    n = len(buf)
    _inside(n, pos, 4, "table")
    vtable = pos - struct.unpack_from("<i", buf, pos)[0]
    _inside(n, vtable, 4, f"vtable of the table at {pos}")
    vsize, osize = struct.unpack_from("<HH", buf, vtable)
    if vsize < 4 or vsize % 2 or osize < 4:
        raise LayoutError(f"vtable at {vtable}: vtable size {vsize} or object size {osize} is odd or below 4")
    _inside(n, vtable, vsize, f"vtable at {vtable}")
    _inside(n, pos, osize, f"table at {pos}")
    for slot in range(4, vsize, 2):
        field = struct.unpack_from("<H", buf, vtable + slot)[0]
        if field and not 4 <= field < osize:
            raise LayoutError(f"table at {pos}: field {slot // 2 - 2} at {field} outside its object of {osize} bytes")


@functools.lru_cache(maxsize=None)
def _accessors(cls: type) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``cls``'s generated accessors: (scalars / tables / strings, scalar vectors, vectors of tables / strings)."""
    names = [m for m, f in vars(cls).items() if callable(f) and m[:1].isupper() and m != "Init"
             and not m.startswith("GetRootAs") and not m.endswith(_SKIP_SUFFIXES)]
    plain: list[str] = []
    numeric: list[str] = []
    objects: list[str] = []
    for m in names:
        if hasattr(cls, m + "Length"):
            (numeric if hasattr(cls, m + "AsNumpy") else objects).append(m)
        elif len(inspect.signature(getattr(cls, m)).parameters) == 1:
            plain.append(m)
    return tuple(plain), tuple(numeric), tuple(objects)


class _Walker:
    """Visits every table reachable from the root once (by class and position), through checked reads."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.seen: set[tuple[str, int]] = set()

    def table(self, obj: Any, where: str) -> None:
        cls = type(obj)
        pos = obj._tab.Pos
        if (cls.__name__, pos) in self.seen:
            return
        self.seen.add((cls.__name__, pos))
        try:
            _check_header(self.buf, pos)
        except LayoutError as err:
            raise LayoutError(f"{where}: {err}") from None
        obj._tab = _CheckedTable(self.buf, pos)
        plain, numeric, objects = _accessors(cls)  # type: ignore[arg-type]
        for name in plain:
            value = self.read(obj, name, where)
            if hasattr(value, "_tab"):
                self.table(value, f"{where}, {name}")
            elif type(value) is flatbuffers.table.Table:
                self.union(obj, name, value, where)
        for name in numeric:
            self.read(obj, name + "AsNumpy", where)
        for name in objects:
            for j in range(self.read(obj, name + "Length", where)):
                value = self.read(obj, name, where, j)
                if hasattr(value, "_tab"):
                    self.table(value, f"{where}, {name}[{j}]")

    def read(self, obj: Any, name: str, where: str, *args: int) -> Any:
        try:
            return getattr(obj, name)(*args)
        except LayoutError as err:
            field = name.removesuffix("AsNumpy").removesuffix("Length")
            raise LayoutError(f"{where}, {field}{list(args) if args else ''}: {err}") from None

    def union(self, owner: Any, name: str, table: Any, where: str) -> None:
        import tflite

        enum = getattr(tflite, _UNIONS.get((type(owner).__name__, name), ""), None)
        kind = self.read(owner, name + "Type", where) if hasattr(owner, name + "Type") else None
        members = {v: k for k, v in vars(enum).items() if not k.startswith("_")} if enum is not None else {}
        member_cls = getattr(tflite, members.get(kind, ""), None)
        if member_cls is None:  # a member this tflite package does not know: check its layout only
            try:
                _check_header(self.buf, table.Pos)
            except LayoutError as err:
                raise LayoutError(f"{where}, {name}: {err}") from None
            return
        member = member_cls()
        member.Init(self.buf, table.Pos)
        self.table(member, f"{where}, {name} ({members[kind]})")


def verify_tflite(buf: bytes) -> None:
    """Visit the whole model in ``buf`` with bounds-checked reads.

    Raises
    ------
    LayoutError
        At the first read outside the file or malformed table, saying where (``subgraph 0,
        tensor 3, Shape: ...``) and which offset.
    """
    import tflite

    n = len(buf)
    if n < 8:
        raise LayoutError(f"the file has {n} bytes; a flatbuffer has at least 8")
    root = struct.unpack_from("<I", buf, 0)[0]
    _inside(n, root, 4, "root table")
    model = tflite.Model()
    model.Init(buf, root)
    _Walker(buf).table(model, "model")
