"""The zoo benchmark's own parts, without the zoo: task metrics on arrays, the MAC count on Relax modules, the peers.

``benchmarks/bench_zoo.py`` needs the models of ``tools/fetch_zoo.py`` (not in CI); what it
computes from their outputs is checked here on arrays whose answers are known, and its peer
runners on the repository's own fixtures.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import zoo_metrics as zm  # noqa: E402


def _outs(*arrays):
    return [[np.asarray(a, dtype=np.float32)] for a in arrays]


def test_sqnr_db_is_pooled_over_inputs():
    ref = [np.ones(4), np.full(4, 3.0)]
    out = [np.ones(4) + 0.1, np.full(4, 3.0)]  # noise only in the first: 0.04 against signal 4 + 36
    assert zm.sqnr_db(ref, out) == pytest.approx(10 * np.log10(40 / 0.04))
    assert zm.sqnr_db(ref, ref) == float("inf")
    with pytest.raises(ValueError, match="same"):
        zm.sqnr_db(ref, out[:1])


def test_sqnr_gap_is_the_noise_ratio_with_a_paired_bootstrap_interval():
    ref = _outs([1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0])
    ours = _outs([1.1, 1.0], [1.0, 1.0], [1.0, 1.1], [1.0, 1.0])  # noise 0.01 on inputs 0 and 2
    theirs = _outs([1.2, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0])  # noise 0.04 on input 0 only
    gap, low, high = zm.sqnr_gap(ref, ours, theirs, 0)
    assert gap == pytest.approx(10 * np.log10(0.04 / 0.02), abs=1e-4)
    assert gap == pytest.approx(zm.output_sqnr(ref, ours, 0) - zm.output_sqnr(ref, theirs, 0), abs=1e-9)
    assert low < 0.0 < gap < high  # four inputs: a resample with input 2 and without input 0 favours them
    assert zm.sqnr_gap(ref, ours, theirs, 0) == (gap, low, high)  # seeded
    with pytest.raises(ValueError, match="infinite"):
        zm.sqnr_gap(ref, ref, theirs, 0)


def test_face_accuracy_clips_the_logit_and_a_constant_output_scores_one_half():
    assert zm.face_scores(np.array([-3430.0, 1.0])) == pytest.approx(1 / (1 + np.exp(-1.0)))
    assert zm.face_scores(np.array([1e6])) == pytest.approx(1 / (1 + np.exp(-100.0)))  # clipped, no overflow
    labels = np.array([1, 1, 0, 0])
    outs = _outs([2.0, -5.0], [-1.0, -2.0], [-3.0, -4.0], [0.5, -9.0])
    assert zm.face_accuracy([[np.zeros(1), o[0]] for o in outs], labels, index=1) == 0.5  # 1st right, 2nd, 4th wrong
    collapsed = [[np.zeros((896, 1))] for _ in labels]  # every crop scores sigmoid(0): never above 0.5
    assert zm.face_accuracy(collapsed, labels, index=0) == 0.5


def test_landmark_error_is_the_mean_xy_distance_and_ignores_z():
    ref = _outs(np.zeros(6))  # two landmarks (x, y, z)
    out = _outs([3.0, 4.0, 100.0, 0.0, 0.0, -7.0])
    assert zm.landmark_error_px(ref, out, indices=[0]) == pytest.approx(2.5)


def test_ssd_anchors_match_mediapipe_counts_and_order():
    palm = zm.ssd_anchors(192, [8, 16, 16, 16])
    assert palm.shape == (2016, 2)  # 24 x 24 x 2 + 12 x 12 x 6, palm_detection_lite's 2016 boxes
    assert zm.ssd_anchors(128, [8, 16, 16, 16]).shape == (896, 2)  # BlazeFace short range
    np.testing.assert_allclose(palm[0], palm[1])
    np.testing.assert_allclose(palm[0], [0.5 / 24, 0.5 / 24])
    np.testing.assert_allclose(palm[2], [1.5 / 24, 0.5 / 24])  # x runs first within a row
    np.testing.assert_allclose(palm[1152:1158], [[0.5 / 12, 0.5 / 12]] * 6)
    np.testing.assert_allclose(palm[-1], [11.5 / 12, 11.5 / 12])


def test_boxes_decode_around_their_anchor_and_iou():
    box = zm.decode_box(np.array([0.0, 0.0, 19.2, 19.2]), np.array([0.5, 0.5]), 192)
    np.testing.assert_allclose(box, [0.45, 0.45, 0.55, 0.55])
    shifted = box + np.array([0.05, 0, 0.05, 0])
    assert zm.box_iou(box, box) == pytest.approx(1.0)
    assert zm.box_iou(box, shifted) == pytest.approx(1 / 3)
    assert zm.box_iou(box, box + 1.0) == 0.0


def test_best_anchor_agreement_and_box_iou_follow_each_runs_own_best_anchor():
    anchors = np.array([[0.25, 0.5], [0.75, 0.5]])
    boxes = np.array([[0, 0, 19.2, 19.2], [0, 0, 19.2, 19.2]], dtype=np.float32)
    ref = [[boxes, np.array([5.0, 1.0])], [boxes, np.array([5.0, 1.0])]]
    out = [[boxes, np.array([4.0, 1.0])], [boxes, np.array([1.0, 4.0])]]  # the second picks the other anchor
    assert zm.best_anchor_agreement(ref, out, 0, 1, anchors, 192) == 0.5
    assert zm.best_box_iou(ref, out, 0, 1, anchors, 192) == pytest.approx(0.5)  # IoU 1 and 0


def test_mask_iou_is_pooled_and_two_empty_masks_agree():
    ref = _outs([0.9, 0.9, 0.1], [0.1, 0.1, 0.1])
    out = _outs([0.9, 0.1, 0.1], [0.9, 0.1, 0.1])
    assert zm.mask_iou(ref, out, 0, 0.5) == pytest.approx(1 / 3)  # intersection 1, union 2 + 1
    assert zm.mask_iou(_outs([0.0]), _outs([0.2]), 0, 0.3) == 1.0


def test_confident_agreement_counts_only_the_inputs_float_is_sure_of():
    sure, tie = [10.0, 0.0, 0.0], [0.1, 0.0, 0.05]  # softmax top-1: ~1.0 and ~0.35
    ref, out = _outs(sure, tie), _outs([0.0, 10.0, 0.0], [0.0, 0.1, 0.0])  # both flipped
    assert zm.confident_agreement(ref, out, 0, 0.3) == 0.0
    assert zm.confident_agreement(ref, _outs(sure, [0.0, 0.1, 0.0]), 0, 0.5) == 1.0  # the flipped tie is not counted
    assert np.isnan(zm.confident_agreement(_outs(tie), _outs(tie), 0, 0.9))


def test_label_agreement_and_ctc_decoding():
    assert zm.label_agreement(_outs([0.2, 0.8], [0.6, 0.4]), _outs([0.3, 0.7], [0.4, 0.6]), 0) == 0.5
    steps = np.eye(4)[[1, 1, 0, 1, 2, 2, 0, 0, 3]]  # (T, classes); 0 is the blank
    assert zm.ctc_greedy(steps[None]) == (1, 1, 2, 3)
    other = np.eye(4)[[1, 0, 0, 1, 2, 2, 2, 0, 3]]  # different steps, the same text
    assert zm.ctc_agreement(_outs(steps), _outs(other), 0) == 1.0
    assert zm.ctc_agreement(_outs(steps), _outs(np.eye(4)[[1, 2, 3]]), 0) == 0.0


def test_count_macs_counts_float_and_integer_convolutions_and_matmuls():
    import zoo_macs
    from tvm import relax

    from tvm_sima import ops as so

    def body(bb: relax.BlockBuilder, x: relax.Var, q: relax.Var) -> list:
        w = relax.const(np.ones((4, 3, 3, 3), "float32"))
        y = bb.emit(relax.op.nn.conv2d(x, w, padding=1))  # 1*4*8*8 outputs x 27 = 6912
        dw = bb.emit(relax.op.nn.conv2d(y, relax.const(np.ones((4, 1, 3, 3), "float32")), padding=1,
                                        groups=4))  # 256 x 9 = 2304
        flat = bb.emit(relax.op.reshape(dw, (1, 256)))
        mm = bb.emit(relax.op.matmul(flat, relax.const(np.ones((256, 10), "float32"))))  # 10 x 256 = 2560
        hwio = relax.const(np.ones((3, 3, 3, 5), "int8"))  # NHWC / HWIO: 5 output channels
        return [mm, bb.emit(so.conv2d(q, hwio, None, shift=0, padding=1, data_layout="NHWC"))]  # 320 x 27 = 8640

    mod = _tuple_module({"x": ((1, 3, 8, 8), "float32"), "q": ((1, 8, 8, 3), "int8")}, body)
    assert zoo_macs.count_macs(mod) == (8640, 6912 + 2304 + 2560)
    assert zoo_macs.wide_macs(mod) == 0


def test_wide_macs_counts_the_integer_layers_with_a_16_bit_operand():
    import zoo_macs
    from tvm import relax

    from tvm_sima import ops as so

    def body(bb: relax.BlockBuilder, q8: relax.Var, q16: relax.Var) -> list:
        dw = relax.const(np.ones((4, 1, 3, 3), "int8"))
        return [bb.emit(so.conv2d(q8, dw, None, shift=0, padding=1, groups=4)),  # 144 x 9
                bb.emit(so.conv2d(q16, dw, None, shift=0, padding=1, groups=4)),  # 144 x 9, 16-bit data
                bb.emit(so.conv2d(q8, relax.const(np.ones((2, 4, 1, 1), "int16")), None, shift=0))]  # 72 x 4

    mod = _tuple_module({"q8": ((1, 4, 6, 6), "int8"), "q16": ((1, 4, 6, 6), "int16")}, body)
    assert zoo_macs.count_macs(mod) == (2 * 1296 + 288, 0)
    assert zoo_macs.wide_macs(mod) == 1296 + 288


def _tuple_module(inputs: dict, body) -> "object":
    """A module whose ``main`` takes ``inputs`` (name -> (shape, dtype)) and returns ``body(bb, *vars)``'s tuple."""
    from tvm import relax

    params = [relax.Var(name, relax.TensorType(shape, dtype)) for name, (shape, dtype) in inputs.items()]
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(relax.Tuple(body(bb, *params)))
        bb.emit_func_output(out)
    return bb.get()


def test_ort_peer_quantizes_an_opset_11_model_and_runs_it_both_ways(tmp_path):
    """PP-OCR's models are opset 11 / 12: per-channel QDQ needs opset 13, the peer converts."""
    import onnx
    from zoo_peers import ort_quantize_static, ort_run, ort_session

    proto = onnx.load(ROOT / "tests" / "fixtures" / "digits_cnn_float.onnx")
    proto.opset_import[0].version = 11  # Conv, Relu, Transpose, Flatten, Gemm: the same at opset 11
    onnx.checker.check_model(proto)
    old = tmp_path / "digits_opset11.onnx"
    onnx.save(proto, old)
    data = np.load(ROOT / "tests" / "fixtures" / "digits_calib_nchw.npy")
    calib, evals = [x[None] for x in data[:8]], [x[None] for x in data[8:24]]
    ref = ort_run(ort_session(str(old)), evals)
    runs = ort_quantize_static(str(old), calib, evals, tmp_path / "work")
    assert [r.config for r in runs] == ["QDQ MinMax, deployed", "QDQ MinMax, ORT_DISABLE_ALL",
                                        "QDQ Percentile, deployed", "QDQ Percentile, ORT_DISABLE_ALL"]
    for run in runs:
        assert run.error == "" and run.outputs is not None, run.error
        assert zm.output_sqnr(ref, run.outputs, 0) > 15.0, run.config  # int8, not a broken model


def _mediapipe_style(data: bytes) -> bytes:
    """The digits CNN as MediaPipe's files are: no signature, op codes in the deprecated field, float16 weights."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    model.signatureDefs = None
    graph = model.subgraphs[0]
    conv = next(op for op in graph.operators
                if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.CONV_2D)
    weight = graph.tensors[conv.inputs[1]]
    half = np.frombuffer(bytes(model.buffers[weight.buffer].data), dtype=np.float32).astype(np.float16)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(half.tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    source = schema.TensorT()
    source.shape, source.type, source.buffer, source.name = list(weight.shape), schema.TensorType.FLOAT16, \
        len(model.buffers) - 1, b"weight_fp16"
    graph.tensors.append(source)
    weight.buffer = 0  # now the DEQUANTIZE output, an activation
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.DEQUANTIZE
    model.operatorCodes.append(code)
    dequantize = schema.OperatorT()
    dequantize.opcodeIndex, dequantize.inputs, dequantize.outputs = len(model.operatorCodes) - 1, \
        [len(graph.tensors) - 1], [conv.inputs[1]]
    graph.operators.insert(0, dequantize)
    for c in model.operatorCodes:
        c.deprecatedBuiltinCode, c.builtinCode = min(c.builtinCode, 127), 0  # 0 (ADD): readers must take the max
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def test_tflite_for_quantizer_keeps_the_float_model_and_adds_what_ai_edge_quantizer_reads():
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils
    from zoo_peers import SIGNATURE, litert_run, tflite_for_quantizer

    styled = _mediapipe_style((ROOT / "tests" / "fixtures" / "digits_cnn_float.tflite").read_bytes())
    assert Interpreter(model_content=styled).get_signature_list() == {}
    fixed = tflite_for_quantizer(styled)
    assert list(Interpreter(model_content=fixed).get_signature_list()) == [SIGNATURE]
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(fixed))
    codes = [c.builtinCode for c in model.operatorCodes]
    assert schema.BuiltinOperator.CONV_2D in codes and schema.BuiltinOperator.ADD not in codes
    assert all(model.operatorCodes[op.opcodeIndex].builtinCode != schema.BuiltinOperator.DEQUANTIZE
               for op in model.subgraphs[0].operators)
    data = np.load(ROOT / "tests" / "fixtures" / "digits_calib_nchw.npy")
    inputs = [x.transpose(1, 2, 0)[None] for x in data[:8]]
    before, after = (litert_run(m, inputs, reference_kernels=True) for m in (styled, fixed))
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a[0], b[0])  # widening float16 is what DEQUANTIZE did: bit-exact


def test_the_table_compares_with_the_best_peer_and_names_the_first_failing_stage(tmp_path):
    import bench_zoo
    from zoo_data import Metric, ZooModel
    from zoo_peers import PeerRun

    model = ZooModel("toy", tmp_path / "toy.onnx", lambda split, n: ([], None),
                     (Metric("top-1 agreement", lambda r, o, _l: zm.label_agreement(r, o, 0)),), 0, "toy data")
    ref = _outs([1.0, 0.0], [0.0, 1.0])
    result = bench_zoo.Result("toy", ref=ref, ours=_outs([0.9, 0.0], [0.0, 0.9]), macs=(3, 1),
                              report={"fused": ["a"], "float_ops": [{"op": "relax.nn.conv2d_transpose", "tensor": "t",
                                                                     "reason": "no realize function"}]})
    for name in bench_zoo.STAGES:
        result.stages[name] = (True, 1.0, "")
    worse, better = _outs([0.0, 1.0], [0.0, 0.5]), _outs([0.8, 0.0], [0.0, 0.8])
    result.peers = [PeerRun("onnxruntime", "QDQ MinMax, deployed", worse), PeerRun("onnxruntime", "QDQ Percentile, "
                    "ORT_DISABLE_ALL", better), PeerRun("onnxruntime", "QDQ Entropy", error="ValueError: bad")]
    assert bench_zoo.best_peer(model, result).config == "QDQ Percentile, ORT_DISABLE_ALL"
    row = bench_zoo.table_row(model, result)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["toy", "5/5 ok, 5 s", "75.0 %", "1 nn.conv2d_transpose", "20.00 dB",
                     "13.98 dB (QDQ Percentile, ORT_DISABLE_ALL)", "+6.02 dB [+6.02, +6.02]",
                     "top-1 agreement: 1.000 / 1.000 / 1.000"]
    result.stages["quantize"] = (False, 2.0, "ValueError: Too many bins")
    assert "quantize FAILS" in bench_zoo.table_row(model, result)


def test_a_missing_model_is_reported_with_the_command_that_fetches_it(tmp_path):
    import bench_zoo
    from zoo_data import ZooModel

    model = ZooModel("gone", tmp_path / "zoo" / "gone.tflite", lambda split, n: ([], None), (), 0, "none")
    result = bench_zoo.bench_model(model, 2, 2, peers=True, offload=False)
    ok, _seconds, error = result.stages["import"]
    assert not ok and "tools/fetch_zoo.py" in error


def test_lsb_stats_divides_by_the_output_scale_and_counts_exact_elements():
    from zoo_convert import ConvertRun, lsb_stats

    scale = 0.1  # float outputs dequantized with 0.1: differences of whole LSB up to float rounding
    ref = [[np.float32([0.0, 0.3, 0.5]), np.int8([3, -4])], [np.float32([1.0, 1.0, 1.0]), np.int8([0, 0])]]
    got = [[np.float32([0.1, 0.3, 0.5]), np.int8([3, -4])], [np.float32([1.0, 0.8, 1.0]), np.int8([2, 0])]]
    floats, codes = lsb_stats(got, ref, [scale, None])
    assert (floats.max, floats.unit, floats.count) == (2.0, "LSB", 6)
    assert floats.mean == pytest.approx(0.5) and floats.exact == pytest.approx(4 / 6)
    assert (codes.max, codes.mean, codes.exact, codes.unit) == (2.0, 0.5, 0.75, "LSB")  # int8 codes: LSB as they are
    (plain,) = lsb_stats([[np.float32([0.25])]], [[np.float32([0.0])]], [None])
    assert (plain.max, plain.unit) == (0.25, "abs")  # a float output without a scale is not in LSB
    pooled = ConvertRun("p", "o", stats=[floats, codes]).pooled()
    assert (pooled.max, pooled.count) == (2.0, 10) and pooled.exact == pytest.approx(7 / 10)
    with pytest.raises(ValueError, match="same inputs"):
        lsb_stats(got[:1], ref, [scale, None])


def test_the_converter_route_on_an_onnxruntime_qdq_model_matches_ort_disable_all(tmp_path):
    """The digits CNN quantized by the ORT peer: every op converted, within 1 output LSB of ORT_DISABLE_ALL."""
    from zoo_convert import convert_onnx, onnx_output_scales
    from zoo_peers import ort_quantize_static

    data = np.load(ROOT / "tests" / "fixtures" / "digits_calib_nchw.npy")
    calib, evals = [x[None] for x in data[:8]], [x[None] for x in data[8:24]]
    peer = ort_quantize_static(str(ROOT / "tests" / "fixtures" / "digits_cnn_float.onnx"), calib, evals,
                               tmp_path, methods=("Percentile",), sessions=("ORT_DISABLE_ALL",))[0]
    assert peer.error == "" and peer.model is not None, peer.error
    (scale,) = onnx_output_scales(peer.model)
    assert scale is not None and scale > 0  # the logits leave through a DequantizeLinear
    run = convert_onnx(peer.model, "onnxruntime QDQ Percentile", evals)
    assert run.error == "", run.error
    assert run.converted and run.left_float == 0
    (stats,) = run.stats
    assert stats.unit == "LSB" and stats.count == 16 * 10 and stats.max <= 1.0 and stats.exact > 0.8
    np.testing.assert_allclose(run.outputs[0][0], peer.outputs[0][0], atol=1.01 * scale)
    broken = convert_onnx(str(tmp_path / "missing.onnx"), "x", evals)
    assert broken.error and broken.stats == []  # reported in one line, not raised


def test_the_converter_route_on_an_int8_tflite_model_is_bit_exact_with_builtin_ref(tmp_path):
    from zoo_convert import convert_tflite
    from zoo_peers import litert_run

    model = (ROOT / "tests" / "fixtures" / "digits_int8.tflite").read_bytes()
    evals = list(np.load(ROOT / "tests" / "fixtures" / "digits_int8_inputs.npz")["images_float"][:12, None])
    run = convert_tflite(model, "digits int8", evals, tmp_path)
    assert run.error == "", run.error
    assert run.converted and run.left_float == 0
    (stats,) = run.stats
    assert (stats.max, stats.exact, stats.count) == (0.0, 1.0, 12 * 10)
    ref = litert_run(model, evals, reference_kernels=True)  # dequantized: the task metric's inputs
    for got, want in zip(run.outputs, ref, strict=True):
        np.testing.assert_array_equal(got[0], want[0])


def test_the_second_table_names_the_peer_model_and_a_failure_in_one_line(tmp_path, capsys):
    import bench_zoo
    from zoo_convert import ConvertRun, LsbStats
    from zoo_data import Metric, ZooModel

    model = ZooModel("toy", tmp_path / "toy.onnx", lambda split, n: ([], None),
                     (Metric("top-1 agreement", lambda r, o, _l: zm.label_agreement(r, o, 0)),), 0, "toy data")
    ref = _outs([1.0, 0.0], [0.0, 1.0])
    good = ConvertRun("onnxruntime QDQ Percentile", "onnxruntime ORT_DISABLE_ALL", 61, 2,
                      [("relax.nn.conv2d_transpose", "no rule"), ("relax.nn.conv2d_transpose", "no rule")],
                      [LsbStats(5.0, 0.625, 0.5, 8)], _outs([1.0, 0.0], [1.0, 0.0]))
    bad = ConvertRun("ai-edge-quantizer static_wi8_ai8", "LiteRT BUILTIN_REF", error="ValueError: no rule")
    result = bench_zoo.Result("toy", ref=ref, converts=[good, bad])
    rows = [[c.strip() for c in row.strip("|").split("|")] for row in bench_zoo.convert_rows(model, result)]
    assert rows[0] == ["toy", "onnxruntime QDQ Percentile", "61 / 2", "5 vs onnxruntime ORT_DISABLE_ALL", "0.625",
                       "50.0", "-", "top-1 agreement: 0.500"]
    assert rows[1] == ["toy", "ai-edge-quantizer static_wi8_ai8", "-", "fails: ValueError: no rule", "-", "-", "-",
                       "-"]
    assert len(rows[0]) == len(bench_zoo.CONVERT_HEAD.splitlines()[0].strip("|").split("|"))
    bench_zoo.print_convert(model, result, good)
    bench_zoo.print_convert(model, result, bad)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("  converter route on onnxruntime QDQ Percentile: 61 converted / 2 float ops")
    assert lines[1] == "      2 x relax.nn.conv2d_transpose left float: no rule"
    assert lines[2] == "    output 0: vs onnxruntime ORT_DISABLE_ALL max 5 LSB, mean 0.625, exact 50.0 %"
    assert lines[4] == "  converter route on ai-edge-quantizer static_wi8_ai8: FAILS ValueError: no rule"


def test_the_converter_route_takes_the_percentile_qdq_model_and_says_when_the_peer_failed(tmp_path):
    import bench_zoo
    from zoo_data import ZooModel
    from zoo_peers import PeerRun

    model = ZooModel("toy", tmp_path / "toy.onnx", lambda split, n: ([], None), (), 0, "toy data")
    result = bench_zoo.Result("toy", peers=[PeerRun("onnxruntime", "QDQ MinMax, ORT_DISABLE_ALL", model="a.onnx"),
                                            PeerRun("onnxruntime", "QDQ Percentile", error="ValueError: bins")])
    (route,) = bench_zoo.converter_route(model, result, [], tmp_path)
    assert route.error == "no peer model: ValueError: bins"
    result.peers.append(PeerRun("onnxruntime", "QDQ Percentile, ORT_DISABLE_ALL", model=str(tmp_path / "gone.onnx")))
    (route,) = bench_zoo.converter_route(model, result, [np.zeros((1, 2), np.float32)], tmp_path)
    assert route.peer == "onnxruntime QDQ Percentile" and route.oracle == "onnxruntime ORT_DISABLE_ALL"
    assert route.error and "gone.onnx" in route.error  # the chosen file, which does not exist


def test_the_per_op_cell_counts_the_tensors_and_names_the_ops_over_one_lsb():
    import bench_zoo
    from zoo_convert import ConvertRun
    from zoo_per_op import PerOpCheck, TensorLsb

    tensors = [TensorLsb("a", "Conv", "sima.conv2d", 0, 1.0, 4), TensorLsb("b", "Mul", "integer multiply", 1, 0.5, 4),
               TensorLsb("c", "Sigmoid", "table", 3, 0.25, 4, 8.0)]
    check = PerOpCheck(tensors, [("x", "input")])
    assert (check.max, check.within(0), check.within(1), [t.name for t in check.worst(2)]) == (3, 1, 2, ["c", "b"])
    route = ConvertRun("p", "o", per_op=check)
    assert bench_zoo.per_op_cell(route) == "3 (3 tensors: 1 exact, 2 <= 1; Sigmoid 3)"
    assert bench_zoo.per_op_cell(ConvertRun("p", "o")) == "-"
    record = check.to_dict()
    assert (record["max_lsb"], record["checked"], record["within_1_lsb"]) == (3, 3, 2)
    assert record["unchecked"] == [["x", "input"]]
    assert record["worst"][0]["scale_ratio"] == 8.0


def test_the_qconfig_option_takes_a_json_object_and_names_what_is_wrong():
    import argparse

    import bench_zoo

    assert bench_zoo._qconfig_json('{"adaround": true}') == {"adaround": True}
    with pytest.raises(argparse.ArgumentTypeError, match="not JSON"):
        bench_zoo._qconfig_json("{adaround: true}")
    with pytest.raises(argparse.ArgumentTypeError, match="a JSON object"):
        bench_zoo._qconfig_json('["adaround"]')
