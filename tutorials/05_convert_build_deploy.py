"""Tutorial 5: convert an int8 TFLite model, offload it to the sima codegen, export and deploy the .so.

1. ``tvm_sima.load_model`` reads a real int8 TFLite model (TFLite converter output, bundled):
   a QDQ graph that keeps LiteRT's int8 interface.
2. ``tvm_sima.convert(mod, "tflite")`` folds every chain into integer sima ops; the report says
   what was converted and what stayed float.
3. ``tvm_sima.build(qmod, artifact_dir=...)`` partitions for the NPU (``partition_for_sima``) and
   runs the ``relax.ext.sima`` codegen: C++ kernels, and one program artifact per region; the
   tutorial reads an artifact as a backend codegen would (ops, weights, quantization parameters).
4. ``export_library`` writes a ``.so``; a fresh Python process without tvm_sima runs it, and the
   tutorial checks its int8 outputs against LiteRT's reference kernels, bit for bit.

Run:  .venv/bin/python tutorials/05_convert_build_deploy.py [--out DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

import tvm_sima
from tvm_sima.codegen import load_program

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "fixtures" / "digits_ops_int8.tflite"
INPUTS = ROOT / "tests" / "fixtures" / "digits_int8_inputs.npz"


def litert(x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(MODEL), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=None, help="where the .so and artifacts go")
    args = parser.parse_args()
    out = args.out or pathlib.Path(tempfile.mkdtemp(prefix="tvm_sima_tutorial05_"))

    # 1-2. load and convert
    mod, _ = tvm_sima.load_model(MODEL)
    qmod, report = tvm_sima.convert(mod, "tflite")
    print(report.summary())

    # 3. build: partition + codegen; the artifacts are what a SiMa-style toolchain would consume
    ex = tvm_sima.build(qmod, artifact_dir=str(out / "artifacts"))
    regions = sorted((out / "artifacts").iterdir())
    print(f"{len(regions)} region(s) offloaded to the sima codegen")
    program = load_program(regions[0])
    for op in program.graph["ops"]:
        q = program.graph["tensors"][op["outputs"][0]]["quantization"]
        a = op["attrs"]
        print(f"  {op['op']:13s} -> {op['outputs'][0]}: shift {a['shift'][:2]}..., multiplier "
              f"{a['multiplier'][:1]}..., output scale {q['scale'][0]:.5f} zero point {q['zero_point'][0]}")

    # 4. export, then run in a fresh process that imports only tvm
    library = out / "digits_ops_int8.so"
    ex.export_library(str(library))
    images = np.load(INPUTS)["images"][:16].reshape(-1, 1, 8, 8, 1).astype(np.int8)
    np.save(out / "images.npy", images)
    script = (
        "import numpy as np, tvm\nfrom tvm import relax\n"
        f"vm = relax.VirtualMachine(tvm.runtime.load_module({str(library)!r}), tvm.cpu())\n"
        f"xs = np.load({str(out / 'images.npy')!r})\n"
        f"np.save({str(out / 'outputs.npy')!r}, np.stack([vm['main'](tvm.runtime.tensor(x)).numpy() for x in xs]))\n")
    subprocess.run([sys.executable, "-c", script], check=True)
    deployed = np.load(out / "outputs.npy")
    reference = np.stack([litert(x) for x in images])
    exact = int(np.sum(np.all(deployed == reference, axis=(1, 2))))
    print(f"deployed .so vs LiteRT (BUILTIN_REF): {exact}/{len(images)} images bit-exact")
    print(f"library: {library}")
    if exact != len(images):
        raise SystemExit("error: the deployed library differs from LiteRT")


if __name__ == "__main__":
    main()
