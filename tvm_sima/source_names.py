"""The model's own names for the Relax bindings TVM's importers make (``p2o.Conv.12``, not ``lv573``).

TVM's importers name every binding ``lv<k>``. :mod:`tvm_sima.frontends.loader` records, while
importing, which ONNX node (its ``name``, else its first output) or TFLite op (its first output
tensor's name) produced each binding, and attaches the record to ``main`` as the attribute
:data:`ATTR`: ``{binding var name: source name}``. This module is the one place that writes
and reads it:

* :func:`bindings_named` turns the importer's record (the var each node returned -> its name)
  into the attribute's mapping: a binding the importer emitted on its way to a node's result
  (a conv's bias ``add``, a reshape of a constant) belongs to that node, the next named binding
  in program order;
* :func:`attach` puts a mapping on ``main``;
* :class:`SourceNames` answers ``of(var)`` for any var of ``main`` after the passes: Relax var
  names survive the rebuilds (annotate, realize, FoldConstant), so it looks a var up by name; a
  binding a pass created (batch norm decomposed, ...) takes the name of the nearest binding that
  reads it and has one, else of the first argument that has one;
* annotate derives from it ``{tvm-sima tensor name: source name}`` (:data:`TENSOR_SOURCES` on the
  annotated ``main``, read with :func:`tensor_sources`), which realize's report, ``quantize_info``
  and the report page carry;
* ``convert`` gives each ``quantize_info`` it writes the source name of the chain's last quantize
  (the file's ``QuantizeLinear`` writing those codes), so a converted tensor can be found in the file.

Names are data, never parsed: a model may name nodes anything.
"""

from __future__ import annotations

from typing import Mapping, Optional

import tvm
from tvm import relax

from .graph import GraphIndex

__all__ = ["ATTR", "TENSOR_SOURCES", "SourceNames", "attach", "bindings_named", "name_aliases", "tensor_sources"]

#: Function attribute of ``main``: ``{Relax var name: the model's name for the node producing it}``.
ATTR = "sima.source_names"
#: Function attribute of an annotated ``main``: ``{tvm-sima tensor name: source name of its producer}``.
TENSOR_SOURCES = "sima.tensor_sources"


def _bindings(func: relax.Function) -> list[relax.Binding]:
    return [b for block in func.body.blocks for b in block.bindings]


def bindings_named(func: relax.Function, named: Mapping[relax.Var, str],
                   inputs: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """``{var name: source name}`` for every binding of an imported ``func`` (see the module docstring).

    Parameters
    ----------
    func : relax.Function
        ``main`` as the importer returned it.
    named : mapping
        The var each node's conversion returned -> the node's name.
    inputs : mapping, optional
        ``{parameter name: the file's input name}`` (the importers may rename inputs).
    """
    out = {p.name: (inputs or {}).get(p.name, p.name) for p in func.params}
    pending: list[str] = []
    last: Optional[str] = None
    for binding in _bindings(func):
        name = named.get(binding.var)
        if name is None:
            pending.append(binding.var.name)
            continue
        out.update({p: name for p in pending})
        out[binding.var.name] = last = name
        pending = []
    if last is not None:  # the output gathering (gv = lv) after the last node
        out.update({p: last for p in pending})
    return out


def name_aliases(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with every unnamed alias binding (``gv1 = gv``, as a rebuild of ``main`` writes the
    output) named as the var it aliases: canonicalize folds the alias away and binds the aliased
    node's value to the outer var, which would otherwise take the name of the node's input."""
    names = dict(SourceNames(mod["main"]).names)
    added = {}
    for binding in _bindings(mod["main"]):
        value = getattr(binding, "value", None)
        if isinstance(value, relax.Var) and binding.var.name not in names and value.name in names:
            added[binding.var.name] = names[binding.var.name] = names[value.name]
    return attach(mod, added) if added else mod


def attach(mod: tvm.IRModule, names: Mapping[str, str]) -> tvm.IRModule:
    """``mod`` with ``names`` as ``main``'s :data:`ATTR` (merged over any it has)."""
    main = mod["main"]
    merged = {**SourceNames(main).names, **names}
    out = mod.clone()
    out["main"] = main.with_attr(ATTR, {str(k): str(v) for k, v in merged.items()})
    return out


class SourceNames:
    """The source name of a var of ``func`` (a ``main`` that carries :data:`ATTR`, or not).

    ``of(var)`` is the model's name for the node producing ``var``; ``""`` when the function
    carries no names (a module built by hand) or nothing connects ``var`` to a named binding.
    """

    def __init__(self, func: relax.Function) -> None:
        attrs = func.attrs
        self.names: dict[str, str] = ({str(k): str(v) for k, v in attrs[ATTR].items()}
                                      if attrs is not None and ATTR in attrs else {})
        self._func = func
        self._index: Optional[GraphIndex] = None

    def __bool__(self) -> bool:
        return bool(self.names)

    def of(self, var: relax.Expr) -> str:
        """The source name of the node producing ``var`` (see the class docstring)."""
        if not self.names or not isinstance(var, relax.Var):
            return ""
        if var.name in self.names:
            return self.names[var.name]
        return self._nearest(var)

    def _nearest(self, var: relax.Var) -> str:
        if self._index is None:
            self._index = GraphIndex(self._func)
        users = self._index.users
        seen, frontier = {var}, [var]
        while frontier:  # breadth first through the readers
            frontier = [u for v in frontier for u in users.get(v, []) if u is not None and u not in seen]
            seen.update(frontier)
            found = [self.names[u.name] for u in frontier if u.name in self.names]
            if found:
                return found[0]
        value = self._index.producer.get(var)
        args = value.args if isinstance(value, relax.Call) else []
        return next((self.names[a.name] for a in args if isinstance(a, relax.Var) and a.name in self.names), "")


def tensor_sources(func: relax.Function) -> dict[str, str]:
    """An annotated function's ``{tensor name: source name}`` (:data:`TENSOR_SOURCES`; empty without names)."""
    attrs = func.attrs
    if attrs is None or TENSOR_SOURCES not in attrs:
        return {}
    return {str(k): str(v) for k, v in attrs[TENSOR_SOURCES].items()}
