"""Fuzz battery: mutated and truncated model files and program artifacts never crash the process.

The seeded mutators of :mod:`fuzzing` turn the bundled fixtures (every ``fixtures/*.tflite``, float
and int8; ``digits_cnn_float.onnx``; onnxruntime's QDQ and QOperator versions of the digits models)
and two written program artifacts into broken files. Each case runs ``tvm_sima.load_model`` (or
``load_program`` then ``run_program``) in a child process; ``test_fuzz_loaded_files_also_...`` also
converts, builds and runs what loads. A segfault or abort in TVM's C++ shows as a child that died by
a signal while a named case ran, not as a dead pytest.

Allowed outcomes: the file loads, or ``ValueError`` (``CorruptModelError``, ``UnsupportedOpsError``
and the other one-line errors of ``load_model``) / ``FileNotFoundError`` with a one-line message;
for programs only ``ProgramError``; after a file loaded, also ``MemoryError`` from convert / build
(a graph too big for the children's memory limit). Anything else (another exception type, a
multi-line message, a signal, a hang) fails and names the case: target, seed and mutation.

Counts: the CI profile runs fixed seeds (``COUNTS``); ``HYPOTHESIS_PROFILE=thorough`` runs more, from
a random base seed (printed). ``pytest -s`` prints the outcome counts per format. The regression
tests below keep every crash the battery found, each as one explicit edit of a fixture.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import random
import shutil
import struct
from typing import Any

import pytest
from helpers.fuzzing import FIXTURES, run_cases

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE", "ci") == "thorough"
BASE_SEED = random.SystemRandom().randrange(10**6) * 1000 if THOROUGH else 0


def _report(fmt: str, results: list[dict]) -> None:
    counts = collections.Counter(r["outcome"] for r in results)
    print(f"\nfuzz {fmt}: {len(results)} cases, base seed {BASE_SEED}: {dict(counts.most_common())}")
    bad = [r for r in results if "bad" in r]
    details = "\n".join(f"{r['target']} seed {r['seed']} ({r.get('mutation', '?')}): {r['outcome']} "
                        f"{r.get('message', '')}\n{r['bad']}" for r in bad[:5])
    assert not bad, (f"{len(bad)} of {len(results)} {fmt} cases crashed or raised the wrong error (reproduce one: "
                     f"python tests/helpers/fuzzing.py <target> <seed> [deep]):\n{details}")


# ------------------------------------------------------------------------------------- the battery

#: Cases per target: (CI, thorough). Targets: 5 TFLite fixtures, 5 ONNX (bytes and structural), 2 programs.
COUNTS = {"tflite": (40, 200), "onnx": (30, 160), "program": (30, 150), "deep": (6, 30)}


def _count(kind: str) -> int:
    return COUNTS[kind][1 if THOROUGH else 0]


def _seeds(kind: str) -> range:
    return range(BASE_SEED, BASE_SEED + _count(kind))


@pytest.fixture(scope="module")
def quantized_onnx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """onnxruntime's QDQ (per-channel) and QOperator versions of the digits models (tests/helpers/onnx_models.py)."""
    from helpers import onnx_models

    d = tmp_path_factory.mktemp("onnx")
    return {"qdq": onnx_models.quantize_with_onnxruntime(onnx_models.digits_cnn(d / "cnn.onnx"), d / "qdq.onnx",
                                                         per_channel=True),
            "qop": onnx_models.quantize_with_onnxruntime(onnx_models.digits_branches(d / "br.onnx"), d / "qop.onnx",
                                                         per_channel=False, operators=True)}


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> list[pathlib.Path]:
    """Program artifacts of the converted int8 CNN and of the int8 model with every supported op."""
    import tvm_sima
    from tvm_sima.codegen import program_from_function, write_program

    out = []
    for name in ("digits_int8", "digits_ops_int8"):
        qmod, _ = tvm_sima.convert(tvm_sima.load_model(FIXTURES / f"{name}.tflite")[0])
        out.append(write_program(program_from_function(qmod["main"]), tmp_path_factory.mktemp(name)).parent)
    return out


def _tflite_targets() -> list[str]:
    return [f"bytes:{f}" for f in sorted(FIXTURES.glob("*.tflite"))]


def _onnx_targets(quantized: dict[str, pathlib.Path]) -> list[str]:
    float_model = FIXTURES / "digits_cnn_float.onnx"
    return [f"bytes:{float_model}", f"onnx-proto:{float_model}", f"bytes:{quantized['qdq']}",
            f"onnx-proto:{quantized['qdq']}", f"onnx-proto:{quantized['qop']}"]


def test_fuzz_tflite_files() -> None:
    _report("tflite", run_cases([(t, s) for s in _seeds("tflite") for t in _tflite_targets()]))


def test_fuzz_onnx_files(quantized_onnx: dict[str, pathlib.Path]) -> None:
    _report("onnx", run_cases([(t, s) for s in _seeds("onnx") for t in _onnx_targets(quantized_onnx)]))


def test_fuzz_program_artifacts(programs: list[pathlib.Path]) -> None:
    _report("program", run_cases([(f"program:{d}", s) for s in _seeds("program") for d in programs]))


def test_fuzz_loaded_files_also_convert_build_and_run(quantized_onnx: dict[str, pathlib.Path]) -> None:
    """Mutated files that load go on through convert, build and one run (slow: a few per target)."""
    onnx_files = [quantized_onnx["qdq"], FIXTURES / "digits_cnn_float.onnx"]
    targets = _tflite_targets() + [f"onnx-proto:{f}" for f in onnx_files]
    _report("deep", run_cases([(t, s, True) for s in _seeds("deep") for t in targets]))


# ------------------------------------------------------------- regressions: what the fuzzer found, fixed
# Each crash the battery found, as one explicit edit of a fixture; before the fix each raised the
# exception named in its comment (a traceback from the CLI), now a one-line CorruptModelError.

def _tflite_field(table: Any, slot: int) -> int:
    """The file position of field ``slot`` (0-based, schema order) of a ``tflite`` table."""
    off = table._tab.Offset(4 + 2 * slot)
    assert off, f"field {slot} is absent"
    return table._tab.Pos + off


def _tflite_vector(table: Any, slot: int) -> int:
    """The file position of the length word of vector field ``slot``."""
    return table._tab.Vector(table._tab.Offset(4 + 2 * slot)) - 4


def _edit_tflite(name: str, edit: Any) -> bytes:
    import tflite

    buf = bytearray((FIXTURES / name).read_bytes())
    edit(buf, tflite.Model.GetRootAsModel(bytes(buf), 0).Subgraphs(0))
    return bytes(buf)


def _put(buf: bytearray, pos: int, value: int, fmt: str = "<I") -> None:
    struct.pack_into(fmt, buf, pos, value)


TFLITE_REGRESSIONS = {
    # struct.error from tflite.Model.SubgraphsLength (the 31-line traceback)
    "truncated": ("digits_int8.tflite", None, r"model, Description: .* beyond the end of the file of 4504 bytes"),
    # TypeError "bad number -N for type uint32" from flatbuffers' Table.Offset (also in TVM's importer)
    "vtable before the file": ("digits_cnn_float.tflite",
                               lambda b, g: _put(b, g.Tensors(3)._tab.Pos, 0x7FFFFFFF, "<i"),
                               r"Tensors\[3\]: vtable of the table at \d+: offset -\d+ before the start"),
    # struct.error: Buffers(index) read past the vector and the file
    "buffer index": ("digits_int8.tflite", lambda b, g: _put(b, _tflite_field(g.Tensors(3), 2), 0xFFFF),
                     r"tensor 3: buffer index 65535 beyond the 18 buffers"),
    # UnicodeDecodeError from Name().decode() (no file, no tensor named)
    "name not utf-8": ("digits_int8.tflite", lambda b, g: b.__setitem__(_tflite_vector(g.Tensors(6), 3) + 9, 0xFF),
                       r"tensor 6: the name is not UTF-8"),
    # ValueError "cannot reshape array of size 1440 into shape (10,256)" from NumPy (no file, no tensor)
    "data size": ("digits_int8.tflite", lambda b, g: _put(b, _tflite_vector(g.Tensors(3), 0) + 8, 256),
                  r"tensor 3: 1440 bytes of data for shape \[10, 256\] of int8 \(2560 bytes\)"),
    # IndexError from graph.tensors[...]: an op input index past the tensors
    "op input index": ("digits_int8.tflite", lambda b, g: _put(b, _tflite_vector(g.Operators(1), 1) + 4, 10**6),
                       r"op 1 \(DEPTHWISE_CONV_2D\) inputs: tensor indices \[1000000, 7, 6\] outside \[-1, 15\)"),
    # struct.error: OperatorCodes(index) read past the vector and the file
    "opcode index": ("digits_int8.tflite", lambda b, g: _put(b, _tflite_field(g.Operators(4), 0), 99),
                     r"op 4: opcode index 99 beyond the \d+ operator codes"),
    # 2 per-channel scales for 16 channels: sima.dequantize's type inference failed (RuntimeError in another variant)
    "scale count": ("digits_int8.tflite", lambda b, g: _put(b, _tflite_vector(g.Tensors(5).Quantization(), 2), 2),
                    r"tensor 5: 2 scales along dimension 0 of shape \[16, 3, 3, 16\]"),
    # loaded a garbage 40-dim shape (another variant: NumPy's "maximum supported dimension ... is 64")
    "rank": ("digits_int8.tflite", lambda b, g: _put(b, _tflite_vector(g.Tensors(10), 0), 40),
             r"tensor 10: shape .* \(rank above 16"),
    # loaded a (2**31 - 1) x 8 x 8 x 8 activation, which convert and build could not hold in memory
    "elements": ("digits_int8.tflite", lambda b, g: _put(b, _tflite_vector(g.Tensors(10), 0) + 4, 2**31 - 1),
                 r"tensor 10: shape \[2147483647, 8, 8, 8\] declares more than 2147483647 elements"),
    # IndexError in the int8 importer: FULLY_CONNECTED left with one input
    "op arity": ("digits_int8.tflite", lambda b, g: _put(b, _tflite_vector(g.Operators(4), 1), 1),
                 r"op 4 \(FULLY_CONNECTED, output .*\): IndexError"),
    # TVM's multi-line ValueError from inside its TFLite importer, naming no op (RESHAPE to an impossible shape)
    "importer": ("digits_cnn_float.tflite", lambda b, g: _put(b, _tflite_data(g, 7) + 4, 7),
                 r"TVM's TFLite importer failed at op 3 \(RESHAPE\): ValueError: Reshape"),
}


def _tflite_data(graph: Any, tensor: int) -> int:
    """The file position of tensor ``tensor``'s constant data (its buffer's ``data`` vector)."""
    import tflite

    model = tflite.Model()
    model.Init(graph._tab.Bytes, struct.unpack_from("<I", graph._tab.Bytes, 0)[0])
    return _tflite_vector(model.Buffers(graph.Tensors(tensor).Buffer()), 0) + 4


@pytest.mark.parametrize("case", sorted(TFLITE_REGRESSIONS))
def test_tflite_crashes_found_by_the_fuzzer_are_one_line_errors(case: str, tmp_path: pathlib.Path) -> None:
    import tvm_sima
    from tvm_sima.frontends import CorruptModelError

    name, edit, message = TFLITE_REGRESSIONS[case]
    path = tmp_path / "model.tflite"
    data = (FIXTURES / name).read_bytes()
    path.write_bytes(data[: len(data) // 2] if edit is None else _edit_tflite(name, edit))
    # the file readers' findings lead with "truncated or corrupt"; what only TVM's importer trips on
    # says the importer failed on a form it does not take, or on an inconsistency the checks miss
    lead = "the model uses a form the importer does not support, .*" if "importer failed" in message \
        else "truncated or corrupt model file"
    with pytest.raises(CorruptModelError, match=f"model.tflite: {lead} \\(.*{message}") as err:
        tvm_sima.load_model(path)
    assert "\n" not in str(err.value)


def _onnx_edit(model: Any, case: str) -> None:
    from onnx import AttributeProto, TensorProto

    g = model.graph
    if case == "missing input":  # KeyError in TVM's from_onnx (_construct_nodes)
        g.node[1].input[0] = "nope"
    elif case == "raw_data":  # ValueError "cannot reshape" from NumPy in TVM's importer (naming nothing)
        g.initializer[0].raw_data = g.initializer[0].raw_data[:-4]
    elif case == "int4":  # InternalError "TensorCopyFromBytes: size mismatch" from TVM's C++ (packed INT4)
        g.initializer[0].data_type = TensorProto.INT4
    elif case == "attribute type":  # loaded with a warning, pads from the wrong field (or AssertionError)
        next(a for n in g.node for a in n.attribute if a.name == "pads").type = AttributeProto.FLOAT
    elif case == "output":  # KeyError in TVM's from_onnx (the graph outputs)
        g.output[0].name = "nope"
    elif case == "no outputs":  # IndexError in load_model's messages (node.output[0])
        del g.node[1].output[:]
    elif case == "huge input":  # loaded; convert of a QOperator model so mutated took 24 GB: OOM-killed (SIGKILL)
        g.input[0].type.tensor_type.shape.dim[2].dim_value = 2**31
    elif case == "empty":  # an empty file decodes as an empty ModelProto ("IR version 0 not supported")
        model.Clear()


ONNX_REGRESSIONS = {
    "missing input": r"node 1 'relu0' \(Relu\): input 'nope' is not a graph input, an initializer or the output",
    "raw_data": r"initializer '.*': \d+ bytes of raw_data for dims \[.*\] of FLOAT",
    "int4": r"initializer '.*': \d+ bytes of raw_data for dims \[.*\] of INT4",
    "attribute type": r"the ONNX checker rejects it: type field and data field mismatch in attribute pads",
    "output": r"graph output 'nope' is produced by no node",
    "no outputs": r"node 1 'relu0' \(Relu\) has no outputs",
    "empty": r"no graph, or a graph without nodes",
    "huge input": r"graph input 'image': declared dims \[1, 1, 2147483648, 8\] .*more than 2147483647 elements",
}


@pytest.mark.parametrize("case", sorted(ONNX_REGRESSIONS))
def test_onnx_crashes_found_by_the_fuzzer_are_one_line_errors(case: str, tmp_path: pathlib.Path) -> None:
    import onnx

    import tvm_sima
    from tvm_sima.frontends import CorruptModelError

    model = onnx.load(str(FIXTURES / "digits_cnn_float.onnx"))
    _onnx_edit(model, case)
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    expected = f"model.onnx: truncated or corrupt model file \\({ONNX_REGRESSIONS[case]}"
    with pytest.raises(CorruptModelError, match=expected):
        tvm_sima.load_model(path)


def test_tvm_onnx_importer_failures_name_the_node(tmp_path: pathlib.Path) -> None:
    """A consistent file TVM's importer still rejects (Gemm weights of the wrong width): the node is named."""
    import onnx
    from onnx import numpy_helper

    import tvm_sima
    from tvm_sima.frontends import CorruptModelError

    model = onnx.load(str(FIXTURES / "digits_cnn_float.onnx"))
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    init = next(i for i in model.graph.initializer if i.name == gemm.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init)[:-1], init.name))  # one row short
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    with pytest.raises(CorruptModelError, match=rf"TVM's ONNX importer failed at node '{gemm.name}' \(Gemm\)"):
        tvm_sima.load_model(path)


def test_qoperator_nodes_with_too_few_inputs_and_omitted_optional_ones(quantized_onnx: dict) -> None:
    """rewrite_qoperators indexed inputs blindly: IndexError on a short node, and on a QLinearAdd whose
    optional C_zero_point is omitted (7 inputs, valid in com.microsoft's schema)."""
    import onnx

    from tvm_sima.frontends.onnx_qdq import rewrite_qoperators

    model = onnx.load(str(quantized_onnx["qop"]))
    add = next(n for n in model.graph.node if n.op_type == "QLinearAdd")
    del add.input[7:]
    assert not any(n.op_type == "QLinearAdd" for n in rewrite_qoperators(model).graph.node)
    conv = next(n for n in model.graph.node if n.op_type == "QLinearConv")
    del conv.input[5:]
    with pytest.raises(ValueError, match=r"node '.*' \(QLinearConv\) has 5 inputs; the operator takes at least 8"):
        rewrite_qoperators(model)


def _edit_program(directory: pathlib.Path, case: str) -> None:
    program, weights = directory / "program.json", directory / "weights.npz"
    graph = json.loads(program.read_text())
    if case == "npz truncated":  # zipfile.BadZipFile from np.load
        weights.write_bytes(weights.read_bytes()[:100])
    elif case == "not utf-8":  # UnicodeDecodeError from read_text
        program.write_bytes(b"\xff" + program.read_bytes())
    elif case == "tensor entry":  # AttributeError: 'int' object has no attribute 'get'
        graph["tensors"][graph["inputs"][0]] = 0
    elif case == "operand":  # KeyError in run_program
        graph["ops"][0]["inputs"][0] = "nope"
    elif case == "attrs key":  # KeyError deep in the NumPy kernels
        del graph["ops"][0]["attrs"]["output_zero_point"]
    elif case == "declared shape":  # ran silently: a result unlike the tensor the program declares
        graph["tensors"][graph["ops"][0]["outputs"][0]]["shape"][-1] += 1
    if case in ("tensor entry", "operand", "attrs key", "declared shape"):
        program.write_text(json.dumps(graph))


PROGRAM_REGRESSIONS = {
    "npz truncated": r"weights.npz: not a readable .npz \(BadZipFile",
    "not utf-8": r"program.json: not readable as UTF-8 JSON",
    "tensor entry": r"program.json: tensor '.*': needs a dict with 'shape', 'dtype' and 'constant'",
    "operand": r"program.json: op 0 '.*' \(sima.conv2d\): operand 'nope' is not an input, a constant",
    "attrs key": r"op 0 '.*' \(sima.conv2d\): KeyError: 'output_zero_point'",
    "declared shape": r"op 0 '.*' \(sima.conv2d\): computed int8\[1, 8, 8, 8\], the program declares "
                      r"int8\[1, 8, 8, 9\]",
}


@pytest.mark.parametrize("case", sorted(PROGRAM_REGRESSIONS))
def test_corrupt_programs_raise_program_error(case: str, programs: list, tmp_path: pathlib.Path) -> None:
    import numpy as np

    from tvm_sima.codegen import ProgramError, load_program, run_program

    directory = tmp_path / "artifact"
    shutil.copytree(programs[0], directory)
    spec = json.loads((directory / "program.json").read_text())
    _edit_program(directory, case)
    with pytest.raises(ProgramError, match=PROGRAM_REGRESSIONS[case]):
        run_program(load_program(directory), np.zeros(spec["tensors"][spec["inputs"][0]]["shape"], np.int8))
