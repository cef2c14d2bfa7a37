"""The memory price of ``qconfig(depthwise_input_bits=16)`` on the zoo's models, from the annotated graph (no data).

For each model: how many activations get 16-bit codes (``tvm_sima.passes.depthwise_bits.depthwise_inputs``) and
the activations' bytes against all-8-bit codes (the MACs with a 16-bit operand, counted in the integer
program: ``bench_zoo.py --qconfig '{"depthwise_input_bits": 16}'``'s "int MAC %" column)::

    .venv/bin/python tools/fetch_zoo.py && make models
    PYTHONPATH=$PWD .venv/bin/python benchmarks/depthwise16_cost.py
"""

from __future__ import annotations

import numpy as np
from zoo_data import MODELS

import tvm_sima
from tvm_sima.graph import GraphIndex, op_name, static_shape
from tvm_sima.params import bind_params
from tvm_sima.passes.annotate import annotate
from tvm_sima.passes.canonicalize import canonicalize
from tvm_sima.passes.depthwise_bits import depthwise_inputs


def cost(file: str, input_shapes: dict | None) -> tuple[int, float]:
    """(tensors widened, activation bytes ratio)."""
    mod, params = tvm_sima.load_model(file, input_shapes=input_shapes)
    amod, _ = annotate(canonicalize(bind_params(mod, params) if params else mod), tvm_sima.current_qconfig())
    wide = set(depthwise_inputs(amod))
    index = GraphIndex(amod["main"])
    sizes = {}
    for var in index.order:
        call = index.producer[var]
        if op_name(call) == "sima.simulated_quantize" and str(call.attrs["kind"]) != "weight":  # type: ignore
            shape = static_shape(var)
            sizes[str(call.attrs["name"])] = int(np.prod(shape)) if shape else 0  # type: ignore
    narrow = sum(sizes.values())
    return len(wide), (narrow + sum(sizes.get(t, 0) for t in wide)) / narrow


def main() -> None:
    print("| model | tensors at 16 bits | activation bytes |\n|---|---|---|")
    for name, model in MODELS.items():
        n, ratio = cost(str(model.file), model.input_shapes)
        print(f"| {name} | {n} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
