"""The converter route op by op on the ONNX zoo, alone: onnxruntime QDQ Percentile -> convert -> the per-op check.

``bench_zoo.py --per-op`` runs the same check inside the whole zoo benchmark; this runs only it:
``.venv/bin/python benchmarks/bench_per_op.py [--models ppocr_cls,...] [--json FILE]``
(:mod:`zoo_per_op` says what is compared and how).
"""

from __future__ import annotations

from typing import Any

from zoo_convert import convert_onnx
from zoo_data import MODELS
from zoo_peers import ort_quantize_static


def run_model(name: str, n_calib: int, n_eval: int, work: Any) -> dict:
    """One ONNX zoo model: onnxruntime QDQ Percentile (the second table's peer model), converted, checked per op."""
    model = MODELS[name]
    (calib, _), (evals, _) = model.inputs("calib", n_calib), model.inputs("eval", n_eval)
    (peer,) = ort_quantize_static(str(model.file), calib, evals, work / name, methods=("Percentile",),
                                  sessions=("ORT_DISABLE_ALL",))
    if peer.model is None:
        return {"model": name, "error": peer.error}
    run = convert_onnx(str(peer.model), "onnxruntime QDQ Percentile", evals, model.input_shapes, peer.outputs,
                       per_op=True)
    pooled = run.pooled()
    return {"model": name, "error": run.error, "converted": run.converted, "left_float": run.left_float,
            "output_max_lsb": None if pooled is None else pooled.max, "seconds": run.seconds,
            "per_op": None if run.per_op is None else run.per_op.to_dict()}


def print_check(record: dict) -> None:
    print(f"\n== {record['model']}: {record.get('converted')} converted / {record.get('left_float')} float ops, "
          f"output max {record.get('output_max_lsb')} LSB, {record.get('seconds', 0):.0f} s")
    check = record.get("per_op")
    if record.get("error") or check is None:
        print(f"  FAILS {record.get('error')}")
        return
    print(f"  per op (isolated): max {check['max_lsb']} LSB; {check['checked']} tensors checked, {check['exact']} "
          f"exact, {check['within_1_lsb']} within 1 LSB; {len(check['unchecked'])} unchecked")
    for t in check["worst"][:8]:
        ratio = "-" if t["scale_ratio"] is None else f"{t['scale_ratio']:.2f}"
        print(f"    {t['max']:4d} LSB  exact {100 * t['exact']:6.2f} %  in/out scale {ratio:>7}  {t['op']:<18} "
              f"{t['converted']:<22} {t['name']}")
    for tensor, why in check["unchecked"]:
        print(f"    unchecked: {tensor}: {why}")


def main() -> None:
    import argparse
    import json
    import logging
    import pathlib
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ppocr_cls,ppocr_det,ppocr_rec,efficientnet_lite0")
    parser.add_argument("--calib", type=int, default=16)
    parser.add_argument("--eval", type=int, default=8)
    parser.add_argument("--json", type=pathlib.Path, help="also write every tensor's numbers here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("tvm_sima").setLevel(logging.ERROR)
    import tvm_sima  # noqa: F401  (sets the thread count before TVM's runtime starts)

    records = []
    with tempfile.TemporaryDirectory(prefix="bench_per_op_") as tmp:
        for name in [n.strip() for n in args.models.split(",") if n.strip()]:
            records.append(run_model(name, args.calib, args.eval, pathlib.Path(tmp)))
            print_check(records[-1])
    if args.json:
        args.json.write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    main()
