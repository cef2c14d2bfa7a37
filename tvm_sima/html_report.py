"""The per-layer accuracy report as one self-contained HTML page (no network, no JavaScript library).

:func:`write_html` takes the :class:`~tvm_sima.compare.TensorMetrics` of one or both modes of
:func:`~tvm_sima.compare.compare_tensors` and writes a page with

* a summary (model, evaluation batches, output metrics, the tensor with the lowest SQNR);
* the per-tensor SQNR curve of every mode, in program order (an SVG image);
* a table: name, dtype / bits, scale, zero point and, per mode, SQNR, cosine, MSE, max error —
  rows whose isolated SQNR (else the first mode's) is below ``warn_db`` highlighted;
* histograms of float vs dequantized values of the ``worst`` tensors (lowest isolated SQNR), from the
  value samples the metrics keep.

Images are SVG embedded as ``data:`` URIs in ``<img>`` tags, so the file can be mailed or
attached to a CI run as is. A small inline script records, on load, how many table rows and
images the browser rendered (``<body data-rendered=...>``); the test reads it from headless
Chromium.
"""

from __future__ import annotations

import base64
import html
import json
import math
import pathlib
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from .compare import TensorMetrics

__all__ = ["write_report", "write_html", "sqnr_chart_svg", "histogram_svg"]

_COLORS = {"continuous": "#1f77b4", "isolated": "#ff7f0e"}
_FONT = 'font-family="sans-serif" font-size="11"'


def _finite(value: float, cap: float) -> float:
    return cap if not math.isfinite(value) else value


def _fmt(value: float, digits: int = 2) -> str:
    if math.isnan(value):
        return "n/a"
    if not math.isfinite(value):
        return "exact" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def sqnr_chart_svg(modes: Mapping[str, Sequence[TensorMetrics]], width: int = 760, height: int = 300) -> str:
    """An SVG line chart of SQNR (dB) per tensor, one line per mode; exact tensors drawn at the top."""
    names = [m.name for m in next(iter(modes.values()))]
    values = [m.sqnr for ms in modes.values() for m in ms if math.isfinite(m.sqnr)]
    top = 10 * math.ceil((max(values, default=60.0) + 1) / 10)
    bottom = min(0, 10 * math.floor(min(values, default=0.0) / 10))
    left, right, upper, lower = 48, 140, 24, 110
    width = max(width, left + right + 14 * len(names))  # long models: a wider chart, every k-th label
    every = max(1, math.ceil(len(names) / 120))
    plot_w, plot_h = width - left - right, height - upper - lower
    step = plot_w / max(len(names) - 1, 1)

    def x(i: int) -> float:
        return left + (i * step if len(names) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return upper + plot_h * (top - _finite(v, top)) / (top - bottom)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="white"/>']
    for tick in range(bottom, top + 1, 10 * max(1, (top - bottom) // 60)):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y(tick) + 4:.1f}" text-anchor="end" {_FONT}>{tick:.0f}</text>')
    parts.append(f'<text x="12" y="{upper + plot_h / 2:.0f}" transform="rotate(-90 12 {upper + plot_h / 2:.0f})" '
                 f'text-anchor="middle" {_FONT}>SQNR (dB)</text>')
    for i, name in enumerate(names):
        if i % every:
            continue
        label = html.escape(name if len(name) <= 28 else name[:27] + "…")
        parts.append(f'<text x="{x(i):.1f}" y="{upper + plot_h + 10}" transform="rotate(45 {x(i):.1f} '
                     f'{upper + plot_h + 10})" {_FONT}>{label}</text>')
    for k, (mode, metrics) in enumerate(modes.items()):
        color = _COLORS.get(mode, "#2ca02c")
        points = " ".join(f"{x(i):.1f},{y(m.sqnr):.1f}" for i, m in enumerate(metrics))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.extend(f'<circle cx="{x(i):.1f}" cy="{y(m.sqnr):.1f}" r="3" fill="{color}"/>'
                     for i, m in enumerate(metrics))
        parts.append(f'<rect x="{left + 10 + 120 * k}" y="6" width="12" height="12" fill="{color}"/>'
                     f'<text x="{left + 26 + 120 * k}" y="16" {_FONT}>{html.escape(mode)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(metrics: TensorMetrics, bins: int = 40, width: int = 360, height: int = 200) -> str:
    """An SVG histogram of a tensor's sampled float values against its dequantized values."""
    ref, test = metrics.samples
    both = np.concatenate([ref, test]) if ref.size else np.zeros(1, np.float32)
    lo, hi = float(both.min()), float(both.max())
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    series = [(np.histogram(ref, edges)[0], "#1f77b4", 0.55), (np.histogram(test, edges)[0], "#d62728", 0.45)]
    peak = max(1, max(int(c.max(initial=0)) for c, _, _ in series))
    left, right, upper, lower = 40, 10, 26, 30
    plot_w, plot_h = width - left - right, height - upper - lower
    bar_w = plot_w / bins
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{left}" y="14" {_FONT} font-weight="bold">{html.escape(metrics.name)}</text>']
    for c, color, opacity in series:
        for i, n in enumerate(c):
            if n:
                h = plot_h * n / peak
                parts.append(f'<rect x="{left + i * bar_w:.1f}" y="{upper + plot_h - h:.1f}" width="{bar_w:.1f}" '
                             f'height="{h:.1f}" fill="{color}" fill-opacity="{opacity}"/>')
    for k, (label, color) in enumerate((("float", "#1f77b4"), ("dequantized", "#d62728"))):
        parts.append(f'<rect x="{width - 170 + 85 * k}" y="4" width="10" height="10" fill="{color}"/>'
                     f'<text x="{width - 156 + 85 * k}" y="13" {_FONT}>{label}</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{upper + plot_h}" y2="{upper + plot_h}" stroke="#333"/>'
                 f'<text x="{left}" y="{height - 8}" {_FONT}>{lo:.3g}</text>'
                 f'<text x="{width - right}" y="{height - 8}" text-anchor="end" {_FONT}>{hi:.3g}</text>'
                 f'<text x="{left - 4}" y="{upper + 8}" text-anchor="end" {_FONT}>{peak}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _row(m: TensorMetrics) -> dict:
    """``m.to_dict()`` as strict JSON: an exact tensor's infinite SQNR becomes ``None``."""
    return {k: _strict(v) for k, v in m.to_dict().items()}


def _strict(value: object) -> object:
    """A value for strict JSON: an infinite or NaN float becomes ``None``."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _img(svg: str, alt: str, cls: str) -> str:
    data = base64.b64encode(svg.encode()).decode()
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="data:image/svg+xml;base64,{data}">'


_CSS = """
body { font-family: sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td.name { text-align: left; font-family: monospace; }
tr.low td { background: #fde2e1; }
.hists img { margin: 4px; border: 1px solid #eee; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var rows = document.querySelectorAll("table#tensors tbody tr");
  var shown = Array.prototype.filter.call(rows, function (r) { return r.offsetHeight > 0; }).length;
  var imgs = document.querySelectorAll("img");
  var loaded = Array.prototype.filter.call(imgs, function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-rendered", JSON.stringify({rows: shown, images: imgs.length, loaded: loaded}));
});
"""


def write_html(path: Union[str, pathlib.Path], modes: Mapping[str, Sequence[TensorMetrics]], *,
               model: str = "", eval_batches: int = 0, output_metrics: Optional[Mapping[str, float]] = None,
               worst: int = 4, warn_db: float = 30.0) -> pathlib.Path:
    """Write the report page; ``modes`` maps "continuous" / "isolated" to metrics in program order."""
    if not modes or not any(modes.values()):
        raise ValueError("write_html: no quantized tensor to report")
    mode_names = list(modes)
    first = modes[mode_names[0]]
    by_mode = {mode: {m.name: m for m in ms} for mode, ms in modes.items()}
    # where accuracy is lost: the isolated mode (each op's own error) when there, else the first mode
    key_mode = "isolated" if "isolated" in modes else mode_names[0]
    lowest = sorted(modes[key_mode], key=lambda m: _finite(m.sqnr, math.inf))[: max(worst, 0)]
    title = f"tvm-sima per-layer accuracy: {pathlib.Path(model).name or 'model'}"
    out: list[str] = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                      f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
                      f"<h1>{html.escape(title)}</h1>",
                      f"<p>Float and quantized programs on the same {eval_batches} evaluation batch(es). "
                      "<b>continuous</b>: the quantized program feeds itself (error accumulated up to the tensor); "
                      "<b>isolated</b>: each tensor's producer is fed the float values, quantized "
                      "(error the op adds on its own). SQNR = 10 log10(&Sigma;float&sup2; / &Sigma;(float &minus; "
                      "dequantized)&sup2;). A tensor is named after its first reader "
                      "(<code>conv2d_2.input</code> is what the layer before <code>conv2d_2</code> computes) "
                      "or after its producer "
                      "(<code>conv2d_2.output</code>); <i>computed by</i> is the integer op that makes it.</p>"]
    summary = []
    for mode, metrics in modes.items():
        low_m = min(metrics, key=lambda m: _finite(m.sqnr, math.inf), default=None)
        if low_m is not None:
            summary.append(f"<li>lowest SQNR ({html.escape(mode)}): <code>{html.escape(low_m.name)}</code> "
                           f"(computed by {html.escape(low_m.producer or '?')}) {_fmt(low_m.sqnr)} dB</li>")
    for name, value in (output_metrics or {}).items():
        summary.append(f"<li>output {html.escape(name)}: {_fmt(value, 4)}</li>")
    out.append(f'<ul id="summary">{"".join(summary)}</ul>')
    out.append("<h2>SQNR per tensor</h2>")
    out.append(_img(sqnr_chart_svg(modes), "SQNR per tensor in program order", "chart"))
    out.append('<h2>Tensors</h2><table id="tensors"><thead><tr><th>#</th><th>tensor</th><th>computed by</th>'
               "<th>dtype</th><th>bits</th><th>scale</th><th>zero point</th>")
    for mode in mode_names:
        out.append(f"<th>SQNR dB ({mode})</th><th>cosine ({mode})</th><th>MSE ({mode})</th>"
                   f"<th>max error ({mode})</th>")
    out.append("</tr></thead><tbody>")
    for i, m in enumerate(first):
        low = m.name in by_mode[key_mode] and by_mode[key_mode][m.name].sqnr < warn_db
        cells = [f"<td>{i}</td>", f'<td class="name">{html.escape(m.name)}</td>',
                 f'<td class="name">{html.escape(m.producer)}</td>', f"<td>{m.dtype}</td>",
                 f"<td>{m.bits}</td>", f"<td>{m.scale:.6g}</td>", f"<td>{m.zero_point}</td>"]
        for mode in mode_names:
            mm = by_mode[mode].get(m.name)
            cells += ([f"<td>{_fmt(mm.sqnr)}</td>", f"<td>{mm.cosine:.5f}</td>", f"<td>{mm.mse:.3g}</td>",
                       f"<td>{mm.max_abs_error:.4g}</td>"] if mm else ["<td>-</td>"] * 4)
        out.append(f'<tr{" class=low" if low else ""}>{"".join(cells)}</tr>')
    out.append("</tbody></table>")
    if lowest:
        out.append(f"<h2>Float vs dequantized values of the {len(lowest)} lowest-SQNR tensors "
                   f"({html.escape(key_mode)})</h2><div class=hists>")
        out.extend(_img(histogram_svg(m), f"histogram of {m.name}", "hist") for m in lowest)
        out.append("</div>")
    data = {mode: [_row(m) for m in ms] for mode, ms in modes.items()}
    payload = json.dumps(data).replace("</", "<\\/")  # a JSON string never ends the script element
    out.append(f'<script type="application/json" id="data">{payload}</script>')
    out.append(f"<script>{_SCRIPT}</script></body></html>")
    target = pathlib.Path(path)
    target.write_text("\n".join(out), encoding="utf-8")
    return target


def write_report(out_dir: Union[str, pathlib.Path], modes: Mapping[str, Sequence[TensorMetrics]], *,
                 model: str = "", eval_batches: int = 0, output_metrics: Optional[Mapping[str, float]] = None,
                 worst: int = 4) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``per_layer.json`` (strict JSON: an exact tensor's infinite SQNR is ``null``) and ``report.html``.

    Returns the two paths.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    payload = {"model": str(model), "eval_batches": eval_batches,
               "output_metrics": {k: _strict(v) for k, v in (output_metrics or {}).items()},
               "modes": {mode: [_row(m) for m in ms] for mode, ms in modes.items()}}
    json_path = out / "per_layer.json"
    json_path.write_text(json.dumps(payload, indent=1))
    html_path = write_html(out / "report.html", modes, model=model, eval_batches=eval_batches,
                           output_metrics=output_metrics, worst=worst)
    return json_path, html_path
