"""Graph helpers shared by passes, converter, codegen and compare (no other tvm_sima import).

* :func:`remap`: an expression with its vars replaced, to rebuild a function binding by binding.
"""

from __future__ import annotations

from tvm import relax

__all__ = ["remap"]


def remap(expr: relax.Expr, mapping: dict) -> relax.Expr:
    """``expr`` with its vars replaced through ``mapping`` (vars, tuples, calls, tuple items).

    Parameters
    ----------
    expr : relax.Expr
        A binding's value (or a function's body result).
    mapping : dict
        Old var -> new expression; vars not in it are kept.

    Returns
    -------
    relax.Expr
        The same expression over the new vars (other kinds of expression are returned as they are).
    """
    if isinstance(expr, relax.Var):
        return mapping.get(expr, expr)
    if isinstance(expr, relax.Tuple):
        return relax.Tuple([remap(f, mapping) for f in expr.fields])
    if isinstance(expr, relax.TupleGetItem):
        return relax.TupleGetItem(remap(expr.tuple_value, mapping), expr.index)
    if isinstance(expr, relax.Call):
        return relax.Call(expr.op, [remap(a, mapping) for a in expr.args], expr.attrs, expr.ty_args)
    return expr
