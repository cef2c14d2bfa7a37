"""C++ source for the fused integer kernels of a sima program (one function per op).

Every kernel is specialised at generation time: shapes, strides, padding, zero points,
multipliers, shifts, weights and biases are compile-time constants, so the compiler unrolls and
vectorises the inner loops. The arithmetic is the NumPy oracle's (:mod:`tvm_sima.math`): int32
products summed in int32 (as the TIR kernels do), bias and requantization in int64, with the
same branch-free rounding (HALF_UP, HALF_EVEN, HALF_AWAY_FROM_ZERO, and TFLite's
SaturatingRoundingDoublingHighMul + RoundingDivideByPOT).

Loop order (cache): NHWC convolutions keep one output pixel's accumulators for every output
channel and stream the weights (HWIO) contiguously along the output channel; NCHW ones walk the
OIHW weights contiguously along the kernel width; dense rows stream the OI weights.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from ..math.requant import normalize_axis

__all__ = ["CTYPES", "PRELUDE", "kernel_source", "KERNELS"]

_MODES = {"half_up": 0, "half_even": 1, "half_away_from_zero": 2, "tflite": 3}

#: The kernel library's headers, in the order they are concatenated at the top of every program's source.
LIBRARY = ("sima_kernels.h", "sima_gemm.h", "sima_depthwise.h", "sima_requantize.h")
PRELUDE = "".join((pathlib.Path(__file__).with_name(name)).read_text(encoding="utf-8") for name in LIBRARY)

#: C type of each integer dtype a kernel reads or writes.
CTYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t"}


def _array(name: str, values: np.ndarray, ctype: str) -> str:
    flat = np.asarray(values).reshape(-1)
    body = ",".join(str(int(v)) for v in flat)
    return f"static const {ctype} {name}[{max(flat.size, 1)}] = {{{body or '0'}}};\n"


def _blob(name: str, values: np.ndarray) -> str:
    """``values`` (int8) as ``const int8_t* name`` over a string literal of hex escapes.

    A string literal is one token: g++ reads 5 MB of it in 0.3 s, where the same bytes as a decimal
    initializer list take 8 s (measured; issue 16). Every byte is a ``\\xHH`` escape, so no escape
    can swallow the next character.
    """
    raw = np.ascontiguousarray(values, dtype=np.int8).reshape(-1).tobytes() or b"\0"
    hexed = np.frombuffer(raw.hex().encode(), dtype=np.uint8).reshape(-1, 2)
    escaped = np.concatenate([np.tile(np.frombuffer(b"\\x", np.uint8), (len(hexed), 1)), hexed], 1).tobytes().decode()
    lines = '"\n"'.join(escaped[i:i + 4096] for i in range(0, len(escaped), 4096))
    return (f"alignas(64) static const char {name}_raw[{len(raw) + 1}] =\n\"{lines}\";\n"
            f"static const int8_t* const {name} = (const int8_t*){name}_raw;\n")


def _per_channel(values: list, channels: int) -> np.ndarray:
    return np.asarray(values if len(values) > 1 else values * channels, dtype=np.int64)


def _requant_tables(tag: str, a: dict, channels: int, bias: np.ndarray) -> str:
    return (_array(f"{tag}_mult", _per_channel(a["multiplier"], channels), "int64_t")
            + _array(f"{tag}_shift", _per_channel(a["shift"], channels), "int64_t")
            + _array(f"{tag}_bias", bias if bias.size else np.zeros(channels, np.int64), "int64_t"))


def _epilogue(tag: str, a: dict, index: str, acc: str, oc: str) -> str:
    mode = _MODES[a["rounding"]]
    return (f"{index} = ({CTYPES[a['out_dtype']]})sima_kernels::clamp(sima_kernels::requant((int64_t){acc} + "
            f"{tag}_bias[{oc}], {tag}_mult[{oc}], {tag}_shift[{oc}], {mode}) + {a['output_zero_point']}, "
            f"{a['qmin']}, {a['qmax']});")


#: Below this many multiply-accumulates a kernel runs on the calling thread (thread start-up costs more).
PARALLEL_MACS = 1 << 20


def _parallel(rows: int, macs: int) -> str:
    """Run ``work(row0, row1)`` over ``rows`` rows: split in two threads for large kernels (2-core hosts)."""
    if macs < PARALLEL_MACS or rows < 2:
        return f"work(0, {rows});"
    return (f"{{ std::thread t(work, 0, {rows // 2}); work({rows // 2}, {rows}); t.join(); }}")


#: Largest magnitude of an input code of each dtype the kernels read.
_CODE_MAGNITUDE = {"int8": 128, "uint8": 255, "int16": 32768}


def _narrow(a: dict, weight_sums: np.ndarray, bias: np.ndarray, x_dtype: str) -> bool:
    """Whether the epilogue is exact in int32: ``|acc + bias| * m + 2^n < 2^31`` for every reachable ``acc``.

    ``weight_sums`` are the per-channel sums of ``|w|``: ``|acc| <= weight_sums * max |x|``. TFLite's
    rounding (mode 3) keeps its int64 arithmetic.
    """
    if a["rounding"] == "tflite":
        return False
    channels = len(weight_sums)
    bias = bias.astype(np.int64) if bias.size else np.zeros(channels, np.int64)
    mult, shift = _per_channel(a["multiplier"], channels), _per_channel(a["shift"], channels)
    # float64 is exact below 2^53, and anything above that is far past 2^31
    reach = weight_sums.astype(np.float64) * _CODE_MAGNITUDE[x_dtype] + np.abs(bias.astype(np.float64))
    bound = reach * mult.astype(np.float64) + np.exp2(shift.astype(np.float64))
    return bool(np.all(bound < 2.0**31))


def _kind(a: dict, narrow: bool) -> str:
    """The kernel's ``sima_kernels::Kind``: its epilogue as template parameters (only that loop compiles)."""
    return f"sima_kernels::Kind<{_MODES[a['rounding']]}, {'true' if narrow else 'false'}>"


def _epilogue_struct(tag: str, a: dict, narrow: bool = False) -> str:
    """The kernel's ``Epilogue``; ``narrow``: with the int32 copies of its tables (:func:`_narrow32_tables`)."""
    fields = (f"{tag}_bias, {tag}_mult, {tag}_shift, {a['output_zero_point']}, "
              f"{a['qmin']}, {a['qmax']}" + (f", {tag}_bias32, {tag}_mult32, {tag}_shift32" if narrow else ""))
    return f"static const sima_kernels::Epilogue {tag}_e{{{fields}}};\n"


def _narrow32_tables(tag: str, a: dict, channels: int, bias: np.ndarray) -> str:
    return (_array(f"{tag}_mult32", _per_channel(a["multiplier"], channels), "int32_t")
            + _array(f"{tag}_shift32", _per_channel(a["shift"], channels), "int32_t")
            + _array(f"{tag}_bias32", bias if bias.size else np.zeros(channels, np.int64), "int32_t"))


#: Input dtypes of the GEMM / depthwise library kernels: their int16 pair products are exact for 8 bits.
FAST_INPUTS = ("int8", "uint8")


def _library_fits(x_dtype: str, reduction: int, depthwise: bool = False) -> bool:
    """Whether the library kernels sum this op exactly: 8-bit inputs, and ``255 * 128 * K < 2^31`` (the
    int32 lanes of the GEMM, whose byte format stores int8 activations shifted into 0..255); or a
    depthwise conv on int16 codes, whose residue planes hold them as they are (``32768 * 128 * taps < 2^31``)."""
    if depthwise and x_dtype == "int16":
        return 32768 * 128 * reduction < 2**31
    return x_dtype in FAST_INPUTS and 255 * 128 * reduction < 2**31


def _accumulator(weight_sums: np.ndarray, x_dtype: str) -> str:
    """C type of a plain loop's accumulator: int32 while ``sum |w| * max |x| < 2^31`` on every channel
    (every 8-bit layer but the widest), else int64 (16-bit inputs, the 48-bit accumulator)."""
    reach = float(weight_sums.max(initial=0)) * _CODE_MAGNITUDE.get(x_dtype, 2**31)
    return "int32_t" if reach < 2.0**31 else "int64_t"


def _library_conv(fn: str, tag: str, a: dict, geometry: dict, xt: str, yt: str, narrow: bool) -> str | None:
    """The call of the library kernel for this conv, or ``None`` (grouped but not NCHW depthwise: plain loops)."""
    g = geometry
    nchw = a["data_layout"] == "NCHW"
    if g["groups"] == 1:
        kernel = "conv_nchw" if nchw else "conv_nhwc"
    elif nchw and g["ipg"] == 1 and g["opg"] == 1:
        kernel = "depthwise_nchw"
    else:
        return None
    conv = ", ".join(str(g[k]) for k in ("n", "c", "h", "w", "cout", "oh", "ow", "kh", "kw", "sh", "sw", "dh",
                                            "dw", "pt", "pl", "zp"))
    packed = "" if kernel == "depthwise_nchw" else f"static sima_kernels::Packed {tag}_pack;\n"
    args = f"x, y, {tag}_w, " + ("" if kernel == "depthwise_nchw" else f"&{tag}_pack, ") + f"{tag}_g, {tag}_e"
    return (packed + _epilogue_struct(tag, a, narrow) + f"static const sima_kernels::Conv {tag}_g{{{conv}}};\n"
            f"static void {fn}(const {xt}* x, {yt}* y) {{ sima_kernels::{kernel}<{_kind(a, narrow)}>(" + args
            + "); }\n")


def _conv2d(fn: str, op: dict, tensors: dict, weights: dict) -> str:
    a = op["attrs"]
    x_t, y_t = tensors[op["inputs"][0]], tensors[op["outputs"][0]]
    w = weights[op["inputs"][1]]
    bias = weights[op["inputs"][2]] if a.get("has_bias") and len(op["inputs"]) > 2 else np.zeros(0, np.int64)
    nchw = a["data_layout"] == "NCHW"
    groups = a["groups"]
    if nchw:
        n, c, h, wd = x_t["shape"]
        _, _, oh, ow = y_t["shape"]
        cout, ipg, kh, kw = w.shape
    else:
        n, h, wd, c = x_t["shape"]
        _, oh, ow, _ = y_t["shape"]
        kh, kw, ipg, cout = w.shape
    opg = cout // groups
    (sh, sw), (dh, dw), (pt, pl, _, _) = a["strides"], a["dilation"], a["padding"]
    tag = fn + "_c"
    xt, yt = CTYPES[x_t["dtype"]], CTYPES[y_t["dtype"]]
    src = _blob(f"{tag}_w", w) + _requant_tables(tag, a, cout, bias)
    zp = a["input_zero_point"]
    sums = np.abs(w.astype(np.int64)).sum(axis=(1, 2, 3) if nchw else (0, 1, 2))
    depthwise_nchw = nchw and groups > 1 and ipg == 1 and opg == 1
    if _library_fits(x_t["dtype"], ipg * kh * kw, depthwise_nchw) and (depthwise_nchw or x_t["dtype"] in FAST_INPUTS):
        geometry = dict(n=n, c=c, h=h, w=wd, cout=cout, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw,
                        pt=pt, pl=pl, zp=zp, groups=groups, ipg=ipg, opg=opg)
        narrow = _narrow(a, sums, bias, x_t["dtype"])
        library = _library_conv(fn, tag, a, geometry, xt, yt, narrow)
        if library is not None:
            return src + (_narrow32_tables(tag, a, cout, bias) if narrow else "") + library
    at = _accumulator(sums, x_t["dtype"])
    if not nchw:
        if ipg == 1 and opg == 1:  # depthwise: channels innermost, contiguous in x and w
            inner = f"""for (int ch = 0; ch < {cout}; ++ch)
          acc[ch] += (inside ? (int32_t)px[ch] : {zp}) * (int32_t)pw[ch];"""
        else:
            inner = f"""for (int g = 0; g < {groups}; ++g) for (int ic = 0; ic < {ipg}; ++ic) {{
          const int32_t xv = inside ? (int32_t)px[g * {ipg} + ic] : {zp};
          const int8_t* pwo = pw + ic * {cout} + g * {opg};
          {at}* pacc = acc + g * {opg};
          for (int o = 0; o < {opg}; ++o) pacc[o] += xv * (int32_t)pwo[o];
        }}"""
        rows = n * oh
        body = f"""
  auto work = [&](int row0, int row1) {{
  for (int row = row0; row < row1; ++row) for (int ox = 0; ox < {ow}; ++ox) {{
    const int b = row / {oh}, oy = row % {oh};
    {at} acc[{cout}] = {{0}};
    for (int ky = 0; ky < {kh}; ++ky) {{
      const int iy = oy * {sh} + ky * {dh} - {pt};
      for (int kx = 0; kx < {kw}; ++kx) {{
        const int ix = ox * {sw} + kx * {dw} - {pl};
        const bool inside = iy >= 0 && iy < {h} && ix >= 0 && ix < {wd};
        const {xt}* px = x + ((b * {h} + (inside ? iy : 0)) * {wd} + (inside ? ix : 0)) * {c};
        const int8_t* pw = {tag}_w + (ky * {kw} + kx) * {ipg * cout};
        {inner}
      }}
    }}
    {yt}* py = y + ((b * {oh} + oy) * {ow} + ox) * {cout};
    for (int oc = 0; oc < {cout}; ++oc) {{ {_epilogue(tag, a, "py[oc]", "acc[oc]", "oc")} }}
  }}
  }};
  {_parallel(rows, n * oh * ow * kh * kw * ipg * cout)}"""
    else:
        body = f"""
  for (int b = 0; b < {n}; ++b) for (int oc = 0; oc < {cout}; ++oc) {{
    const int g = oc / {opg};
    const int8_t* pw = {tag}_w + oc * {ipg * kh * kw};
    for (int oy = 0; oy < {oh}; ++oy) for (int ox = 0; ox < {ow}; ++ox) {{
      {at} acc = 0;
      for (int ic = 0; ic < {ipg}; ++ic) {{
        const {xt}* px = x + (b * {c} + g * {ipg} + ic) * {h * wd};
        for (int ky = 0; ky < {kh}; ++ky) {{
          const int iy = oy * {sh} + ky * {dh} - {pt};
          for (int kx = 0; kx < {kw}; ++kx) {{
            const int ix = ox * {sw} + kx * {dw} - {pl};
            const int32_t xv = (iy >= 0 && iy < {h} && ix >= 0 && ix < {wd}) ? (int32_t)px[iy * {wd} + ix] : {zp};
            acc += xv * (int32_t)pw[(ic * {kh} + ky) * {kw} + kx];
          }}
        }}
      }}
      {_epilogue(tag, a, f"y[((b * {cout} + oc) * {oh} + oy) * {ow} + ox]", "acc", "oc")}
    }}
  }}"""
    return src + f"static void {fn}(const {xt}* x, {yt}* y) {{{body}\n}}\n"


def _dense(fn: str, op: dict, tensors: dict, weights: dict) -> str:
    a = op["attrs"]
    x_t, y_t = tensors[op["inputs"][0]], tensors[op["outputs"][0]]
    w = weights[op["inputs"][1]]
    bias = weights[op["inputs"][2]] if a.get("has_bias") and len(op["inputs"]) > 2 else np.zeros(0, np.int64)
    rows, k = int(np.prod(x_t["shape"][:-1])), x_t["shape"][-1]
    cout = w.shape[0]
    tag = fn + "_d"
    xt, yt = CTYPES[x_t["dtype"]], CTYPES[y_t["dtype"]]
    src = _blob(f"{tag}_w", w) + _requant_tables(tag, a, cout, bias)
    if _library_fits(x_t["dtype"], k):
        narrow = _narrow(a, np.abs(w.astype(np.int64)).sum(axis=1), bias, x_t["dtype"])
        return (src + (_narrow32_tables(tag, a, cout, bias) if narrow else "")
                + f"static sima_kernels::Packed {tag}_pack;\n" + _epilogue_struct(tag, a, narrow)
                + f"static void {fn}(const {xt}* x, {yt}* y) {{ sima_kernels::dense<{_kind(a, narrow)}>(x, y, {tag}_w, "
                f"&{tag}_pack, "
                f"{rows}, {k}, {cout}, {tag}_e); }}\n")
    at = _accumulator(np.abs(w.astype(np.int64)).sum(axis=1), x_t["dtype"])
    body = f"""
  for (int r = 0; r < {rows}; ++r) {{
    const {xt}* px = x + r * {k};
    for (int oc = 0; oc < {cout}; ++oc) {{
      const int8_t* pw = {tag}_w + oc * {k};
      {at} acc = 0;
      for (int i = 0; i < {k}; ++i) acc += (int32_t)px[i] * (int32_t)pw[i];
      {_epilogue(tag, a, f"y[r * {cout} + oc]", "acc", "oc")}
    }}
  }}"""
    return src + f"static void {fn}(const {xt}* x, {yt}* y) {{{body}\n}}\n"


def _requantize(fn: str, op: dict, tensors: dict, weights: dict) -> str:
    a = op["attrs"]
    x_t, y_t = tensors[op["inputs"][0]], tensors[op["outputs"][0]]
    shape = x_t["shape"]
    axis = normalize_axis(a["axis"], len(shape))
    size = int(np.prod(shape))
    channels = shape[axis] if (len(a["multiplier"]) > 1 or len(a["shift"]) > 1) else 1
    inner = int(np.prod(shape[axis + 1:])) if channels > 1 else size
    tag = fn + "_r"
    xt, yt = CTYPES[x_t["dtype"]], CTYPES[y_t["dtype"]]
    src = (_array(f"{tag}_mult", _per_channel(a["multiplier"], channels), "int64_t")
           + _array(f"{tag}_shift", _per_channel(a["shift"], channels), "int64_t")
           + f"static const sima_kernels::Epilogue {tag}_e{{nullptr, {tag}_mult, {tag}_shift, "
           f"{a['zp_out']}, {a['qmin']}, {a['qmax']}}};\n")
    outer = size // (channels * inner)
    mode = _MODES[a["rounding"]]
    call = f"sima_kernels::requantize<{mode}>(x, y, {outer}, {channels}, {inner}, {a['zp_in']}, {tag}_e)"
    return src + f"static void {fn}(const {xt}* x, {yt}* y) {{ {call}; }}\n"


#: op name -> generator ``fn(function name, op, tensors, weights) -> C++ source of `static void fn(x, y)```.
KERNELS = {"sima.conv2d": _conv2d, "sima.dense": _dense, "sima.requantize": _requantize}


def kernel_source(fn: str, op: dict, graph: dict, weights: dict[str, Any]) -> str:
    """The C++ source of one op of a program (``graph``/``weights`` as in the artifact)."""
    if op["op"] not in KERNELS:
        raise ValueError(f"no C++ kernel for {op['op']}; kernels exist for {sorted(KERNELS)}")
    return KERNELS[op["op"]](fn, op, graph["tensors"], weights)
