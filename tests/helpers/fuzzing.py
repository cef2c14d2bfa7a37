"""The fuzzing harness of tests/frontends/test_fuzz.py: seeded mutators, and cases run in child processes.

* :func:`mutate_bytes`: bit flips, 4-byte integers overwritten with boundary values (0x00 / 0x7F /
  0x80 / 0xFF ... and values near the file size, at positions that hold likely offsets, lengths or
  indices), byte overwrites, truncations, chunk deletion and duplication;
* :func:`mutate_onnx`: structural edits of an ONNX protobuf (dims, raw data, data types, node
  inputs / outputs / op types / attributes, node order, graph inputs and outputs, opset, IR version);
* :func:`mutate_program`: edits of a program artifact (``program.json`` bytes or values, ``weights.npz`` bytes).

A case is ``(target, seed[, deep])``: ``target`` is ``bytes:<file>``, ``onnx-proto:<file>`` or
``program:<artifact directory>``, and the same seed gives the same mutation. :func:`run_cases` runs
cases in child processes (``CHUNK`` per child, each limited to ``MEMORY_LIMIT`` bytes of address
space), one JSON line before and after each case, so a child killed by a signal names its case.
Reproduce one case in this process: ``python tests/helpers/fuzzing.py <target> <seed> [deep]``.
"""

from __future__ import annotations

import copy
import json
import pathlib
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback
from typing import Any

HERE = pathlib.Path(__file__).parent  # tests/helpers
FIXTURES = HERE.parent / "fixtures"
ROOT = HERE.parents[1]  # the repository: the children run there, as the tests do
CHUNK = 60  # cases per child process
CHUNK_TIMEOUT = 300.0  # seconds; a hang fails the chunk
MEMORY_LIMIT = 4 << 30  # bytes of address space per child: a huge allocation fails there, not the machine

#: Values written over 4-byte integers: the boundaries offsets, lengths and indices trip on.
BOUNDARY32 = (0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000,
              0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFF80)
BOUNDARY8 = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


# ----------------------------------------------------------------------------------- byte mutations

def _structural_offsets(data: bytes) -> list[int]:
    """Aligned positions holding a small unsigned 32-bit value: likely offsets, lengths or indices."""
    n = len(data)
    return [p for p in range(0, n - 3, 4) if 0 < struct.unpack_from("<I", data, p)[0] < n]


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One seeded mutation of ``data``; returns the new bytes and what was done."""
    out, n = bytearray(data), len(data)
    kind = rng.choice(("bitflip", "int32", "int32", "int32", "byte", "truncate", "delete", "duplicate"))
    if kind == "bitflip":
        bits = sorted(rng.randrange(n * 8) for _ in range(rng.randint(1, 8)))
        for b in bits:
            out[b // 8] ^= 1 << (b % 8)
        return bytes(out), f"bitflip bits {bits}"
    if kind == "int32":
        candidates = _structural_offsets(data)
        pos = rng.choice(candidates) if candidates and rng.random() < 0.7 else rng.randrange(0, n - 3) & ~3
        old = struct.unpack_from("<I", data, pos)[0]
        value = rng.choice(BOUNDARY32 + (n, n - 4, n + 4, old + 4, old - 4, old * 2, rng.randrange(2**32)))
        struct.pack_into("<I", out, pos, value & 0xFFFFFFFF)
        return bytes(out), f"int32 at {pos}: {old:#x} -> {value & 0xFFFFFFFF:#x}"
    if kind == "byte":
        spots = sorted(rng.randrange(n) for _ in range(rng.randint(1, 4)))
        value = rng.choice(BOUNDARY8)
        for s in spots:
            out[s] = value
        return bytes(out), f"bytes {spots} = {value:#x}"
    if kind == "truncate":
        length = rng.randrange(n)
        return bytes(out[:length]), f"truncate to {length} of {n} bytes"
    start = rng.randrange(n)
    size = rng.randint(1, max(1, min(n - start, rng.choice((1, 4, 16, 256)))))
    if kind == "delete":
        del out[start : start + size]
        return bytes(out), f"delete {size} bytes at {start}"
    out[start:start] = data[start : start + size]
    return bytes(out), f"duplicate {size} bytes at {start}"


# -------------------------------------------------------------------------------- ONNX mutations

_ONNX_OPS = ("Conv", "Relu", "Gemm", "MatMul", "Add", "Reshape", "Flatten", "Transpose", "QuantizeLinear",
             "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MaxPool", "Concat", "Softmax", "Identity")
_BIG = (0, -1, -2, 1, 2**31 - 1, -(2**31), 2**62, -(2**62))


def _attr_mutation(model: Any, rng: random.Random) -> str:
    from onnx import AttributeProto

    nodes = [n for n in model.graph.node if n.attribute]
    if not nodes:
        return "no attributes"
    node = rng.choice(nodes)
    attr = rng.choice(node.attribute)
    choice = rng.randrange(4)
    if choice == 0:
        node.attribute.remove(attr)
        return f"node '{node.name}': drop attribute {attr.name}"
    if choice == 1 and attr.ints:
        k = rng.randrange(len(attr.ints))
        attr.ints[k] = rng.choice(_BIG)
        return f"node '{node.name}': {attr.name}[{k}] = {attr.ints[k]}"
    if choice == 1 and attr.ints is not None and attr.type == AttributeProto.INTS:
        del attr.ints[:]
        return f"node '{node.name}': {attr.name} = []"
    if choice == 2:
        attr.type = rng.choice((AttributeProto.FLOAT, AttributeProto.INT, AttributeProto.STRING,
                                AttributeProto.INTS, AttributeProto.TENSOR))
        return f"node '{node.name}': attribute {attr.name} type -> {attr.type}"
    attr.i = rng.choice(_BIG)
    if attr.ints:
        attr.ints.append(rng.choice(_BIG))
    return f"node '{node.name}': {attr.name} i={attr.i} (ints {list(attr.ints)[:6]})"


def _initializer_mutation(model: Any, rng: random.Random) -> str:
    inits = model.graph.initializer
    if not inits:
        return "no initializers"
    init = rng.choice(inits)
    choice = rng.randrange(5)
    if choice == 0 and init.dims:
        k = rng.randrange(len(init.dims))
        init.dims[k] = rng.choice(_BIG + (init.dims[k] + 1, init.dims[k] * 2))
        return f"initializer '{init.name}': dims[{k}] = {init.dims[k]}"
    if choice == 1:
        length = rng.randrange(len(init.raw_data) + 1) if init.raw_data else 0
        init.raw_data = init.raw_data[:length] if rng.random() < 0.7 else init.raw_data + b"\x01\x02\x03"
        return f"initializer '{init.name}': raw_data of {len(init.raw_data)} bytes"
    if choice == 2:
        init.data_type = rng.randrange(0, 26)
        return f"initializer '{init.name}': data_type = {init.data_type}"
    if choice == 3:
        init.dims.append(rng.choice((1, 2, 0)))
        return f"initializer '{init.name}': dims + [{init.dims[-1]}]"
    inits.remove(init)
    return f"drop initializer '{init.name}'"


def _node_mutation(model: Any, rng: random.Random) -> str:
    nodes = model.graph.node
    node = rng.choice(nodes)
    names = [t for n in nodes for t in (*n.input, *n.output)] + [i.name for i in model.graph.initializer]
    choice = rng.randrange(7)
    if choice == 0 and node.input:
        k = rng.randrange(len(node.input))
        node.input[k] = rng.choice(("missing_tensor", "", rng.choice(names)))
        return f"node '{node.name}': input[{k}] = {node.input[k]!r}"
    if choice == 1 and node.input:
        node.input.pop()
        return f"node '{node.name}': drop its last input"
    if choice == 2:
        node.input.append(rng.choice(names + ["missing_tensor"]))
        return f"node '{node.name}': extra input {node.input[-1]!r}"
    if choice == 3:
        node.op_type = rng.choice(_ONNX_OPS)
        return f"node '{node.name}': op_type = {node.op_type}"
    if choice == 4:
        nodes.remove(node)
        return f"drop node '{node.name}'"
    if choice == 5 and len(nodes) > 1:
        a, b = rng.sample(range(len(nodes)), 2)
        first, second = copy.deepcopy(nodes[a]), copy.deepcopy(nodes[b])
        nodes[a].CopyFrom(second)
        nodes[b].CopyFrom(first)
        return f"swap nodes {a} and {b}"
    node.output[0] = rng.choice(names)
    return f"node '{node.name}': output = {node.output[0]!r}"


def _graph_mutation(model: Any, rng: random.Random) -> str:
    g = model.graph
    choice = rng.randrange(6)
    if choice == 0 and g.input:
        dims = g.input[0].type.tensor_type.shape.dim
        if dims:
            d = dims[rng.randrange(len(dims))]
            value = rng.choice((0, -1, 2**31, 2**62, "batch", None))
            if value is None:
                d.Clear()
            elif isinstance(value, str):
                d.dim_param = value
            else:
                d.dim_value = value
            return f"input dim = {value!r}"
    if choice == 1 and g.input:
        g.input[0].type.tensor_type.elem_type = rng.randrange(0, 26)
        return f"input elem_type = {g.input[0].type.tensor_type.elem_type}"
    if choice == 2 and g.output:
        g.output[0].name = rng.choice(("missing_tensor", ""))
        return f"output name = {g.output[0].name!r}"
    if choice == 3:
        model.opset_import[0].version = rng.choice((0, 1, 7, 10, 13, 21, 99, -1))
        return f"opset = {model.opset_import[0].version}"
    if choice == 4:
        model.ir_version = rng.choice((0, 1, 3, 15, 99, -1))
        return f"ir_version = {model.ir_version}"
    if choice == 5 and g.input:
        g.input.remove(g.input[0])
        return "drop the graph input"
    return "no change"


def mutate_onnx(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One to three seeded structural edits of a serialized ONNX model."""
    import onnx

    model = onnx.ModelProto.FromString(data)
    edits = [rng.choice((_attr_mutation, _initializer_mutation, _node_mutation, _node_mutation,
                         _graph_mutation))(model, rng) for _ in range(rng.randint(1, 3))]
    return model.SerializeToString(), "; ".join(edits)


# ----------------------------------------------------------------------------- program mutations

_WRONG_VALUES = (None, 0, -1, 2**40, "x", [], {}, 1.5, True, [1, 2], {"literal": None}, [-5], ["nope"])


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indices) into a JSON value."""
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for k, v in enumerate(value):
            found += _paths(v, (*prefix, k))
    return found


def mutate_program(directory: pathlib.Path, rng: random.Random) -> str:
    """One seeded edit of the artifact in ``directory`` (``program.json`` or ``weights.npz``), in place."""
    program, weights = directory / "program.json", directory / "weights.npz"
    choice = rng.randrange(4)
    if choice == 0:  # the weights file's bytes
        data, what = mutate_bytes(weights.read_bytes(), rng)
        weights.write_bytes(data)
        return f"weights.npz: {what}"
    if choice == 1:  # the JSON text's bytes
        data, what = mutate_bytes(program.read_bytes(), rng)
        program.write_bytes(data)
        return f"program.json: {what}"
    graph = json.loads(program.read_text())
    path = rng.choice(_paths(graph)[1:])
    parent = graph
    for key in path[:-1]:
        parent = parent[key]
    if choice == 2 and isinstance(parent, (dict, list)):
        del parent[path[-1]]
        what = f"delete {list(path)}"
    else:
        parent[path[-1]] = rng.choice(_WRONG_VALUES)
        what = f"set {list(path)} = {parent[path[-1]]!r}"
    program.write_text(json.dumps(graph))
    return f"program.json: {what}"


# ------------------------------------------------------------------------------------- one case

def _outcome(err: BaseException, program: bool, built: bool) -> dict:
    from tvm_sima.codegen import ProgramError

    message = str(err)
    allowed_types: tuple = (ProgramError,) if program else (ValueError, FileNotFoundError)
    if built:  # a file that loads may declare a graph too big to build within the children's memory limit
        allowed_types += (MemoryError,)
    allowed = isinstance(err, allowed_types) and "\n" not in message and message.strip()
    result = {"outcome": type(err).__name__, "message": message[:300]}
    if not allowed:
        result["bad"] = "".join(traceback.format_exception(err)[-6:])[-3000:]
    return result


def _mutated(target: str, seed: int, work: pathlib.Path) -> tuple[pathlib.Path, str]:
    """Write the mutated file (or artifact directory) of case ``(target, seed)`` into ``work``."""
    kind, source = target.split(":", 1)
    rng = random.Random(seed)
    src = pathlib.Path(source)
    if kind == "program":
        out = work / "artifact"
        shutil.copytree(src, out)
        return out, mutate_program(out, rng)
    mutate = mutate_onnx if kind == "onnx-proto" else mutate_bytes
    data, what = mutate(src.read_bytes(), rng)
    out = work / f"case{src.suffix}"
    out.write_bytes(data)
    return out, what


def _build_and_run(mod: Any, params: dict) -> None:
    """Convert (a quantized model), build and run once on zeros: what a loaded file goes on to."""
    import numpy as np
    import tvm
    from tvm import relax

    import tvm_sima
    from tvm_sima.frontends.loader import bind_params

    mod = bind_params(mod, params)
    main = mod["main"]
    if any(op in str(main) for op in ("sima.quantize", "sima.dequantize")):
        mod, _ = tvm_sima.convert(mod)
    vm = relax.VirtualMachine(tvm_sima.build(mod), tvm.cpu())
    shapes = [([int(d) for d in p.ty.shape], str(p.ty.dtype)) for p in mod["main"].params]
    if sum(np.prod(shape, dtype=object) for shape, _ in shapes) <= 2**24:  # run what fits in memory
        vm["main"](*[tvm.runtime.tensor(np.zeros(shape, dtype)) for shape, dtype in shapes])


def run_case(target: str, seed: int, work: pathlib.Path, deep: bool = False) -> dict:
    """Mutate, then load (model files) or load and run (program artifacts); the outcome as a dict.

    ``deep``: a model that loads is also converted (when quantized), built and run once.
    """
    import numpy as np

    import tvm_sima
    from tvm_sima.codegen import load_program, run_program

    path, what = _mutated(target, seed, work)
    result: dict = {"target": target, "seed": seed, "mutation": what}
    try:
        if target.startswith("program:"):
            program = load_program(path)
            spec = json.loads((pathlib.Path(target.split(":", 1)[1]) / "program.json").read_text())
            shape = spec["tensors"][spec["inputs"][0]]["shape"]
            run_program(program, np.zeros(shape, np.int8))
        else:
            mod, params = tvm_sima.load_model(path)
            if deep:
                result["stage"] = "build"
                _build_and_run(mod, params)
        result["outcome"] = "ok"
    except Exception as err:  # noqa: BLE001 - every exception is classified, the bad ones fail the test
        result.update(_outcome(err, target.startswith("program:"), "stage" in result))
    return result


def child_main() -> None:
    """Run the cases given as JSON on stdin; one JSON line before and after each."""
    import logging

    logging.disable(logging.CRITICAL)
    cases = json.loads(sys.stdin.read())
    with tempfile.TemporaryDirectory() as tmp:
        for k, (target, seed, *deep) in enumerate(cases):
            print(json.dumps({"start": k}), flush=True)
            work = pathlib.Path(tmp) / str(k)
            work.mkdir()
            print(json.dumps(run_case(target, seed, work, bool(deep and deep[0]))), flush=True)
            shutil.rmtree(work, ignore_errors=True)


_CHILD = f"import sys; sys.path.insert(0, {str(HERE.parent)!r}); from helpers import fuzzing; fuzzing.child_main()"


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cases(cases: list) -> list[dict]:
    """Run ``cases`` in child processes, ``CHUNK`` at a time; a child that dies names its case."""
    results: list[dict] = []
    todo = list(cases)
    while todo:
        chunk, todo = todo[:CHUNK], todo[CHUNK:]
        try:
            proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(chunk), capture_output=True,
                                  text=True, timeout=CHUNK_TIMEOUT, cwd=ROOT, preexec_fn=_limit_memory)
            stdout, code, stderr = proc.stdout, proc.returncode, proc.stderr
        except subprocess.TimeoutExpired as err:
            stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
            code, stderr = "timeout", ""
        lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        done = [line for line in lines if "start" not in line]
        results += done
        if len(done) < len(chunk):  # the child died (signal, abort, hang) during case len(done)
            target, seed = chunk[len(done)][:2]
            results.append({"target": target, "seed": seed, "outcome": f"child died ({code})",
                            "bad": stderr[-3000:]})
            todo = chunk[len(done) + 1 :] + todo
    return results


if __name__ == "__main__":  # python tests/helpers/fuzzing.py <target> <seed> [deep]: one case, in this process
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_case(sys.argv[1], int(sys.argv[2]), pathlib.Path(tmp), sys.argv[3:] == ["deep"])
        print(json.dumps(outcome, indent=1))
