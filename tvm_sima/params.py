"""A model's weights as parameters of ``main``: bind them, or name the ones still unbound.

``load_model`` returns ``(mod, params)`` with an ONNX model's weights as the parameters of
``main`` after its ``num_input`` data inputs (Relay's convention); :func:`bind_params` turns them
into constants, and :func:`unbound_weights` names those a module still expects at run time.
This module imports only TVM, so the loader, the pipeline and the passes can all use it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["bind_params", "unbound_weights"]


def bind_params(mod: Any, params: dict) -> Any:
    """Bind ``params`` (name -> array) into ``main`` as constants; unknown names are an error."""
    from tvm import relax

    if not params:
        return mod
    names = {p.name for p in mod["main"].params}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ValueError(f"bind_params: {unknown} are not parameters of main")
    return relax.transform.BindParams("main", dict(params))(mod)


def unbound_weights(mod: Any) -> list[str]:
    """Names of ``main``'s parameters after its ``num_input`` data inputs (weights not yet bound)."""
    main = mod["main"]
    if main.attrs is None or "num_input" not in main.attrs:
        return []
    return [p.name for p in main.params[int(main.attrs["num_input"]):]]
