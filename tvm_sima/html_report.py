"""The per-layer accuracy report as one self-contained HTML page (no network, no JavaScript library).

:func:`write_html` takes the :class:`~tvm_sima.compare.TensorMetrics` of one or both modes of
:func:`~tvm_sima.compare.compare_tensors` and writes a page, readable for a model of hundreds of
tensors at a laptop's width, with

* a summary (model, evaluation batches, output metrics, the tensor with the lowest SQNR);
* the lowest-SQNR tensors first (a short table);
* the per-tensor SQNR curve of every mode, in program order (an SVG image scaled to the page);
* every tensor in a table that sorts by any column and filters by words: tensor name, the
  model's own name of the node computing it, the integer op, weight bits (of the fused layer)
  and the tensor's bits, dtype, scale, zero point and, per mode, SQNR, cosine, MSE, max error —
  rows whose isolated SQNR (else the first mode's) is below ``warn_db`` highlighted;
* histograms of float vs dequantized values of the ``worst`` tensors (lowest isolated SQNR), from the
  value samples the metrics keep.

Images are SVG embedded as ``data:`` URIs in ``<img>`` tags, and the sorting / filtering is a
small inline script, so the file can be mailed or attached to a CI run as is. The script also
records, on load, what the browser laid out (``<body data-rendered=...>``: rows shown, images
decoded, the page's and the window's widths); the tests read it from headless Chromium.
"""

from __future__ import annotations

import base64
import html
import json
import math
import pathlib
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .compare import TensorMetrics

__all__ = ["write_report", "write_html", "sqnr_chart_svg", "histogram_svg"]

_COLORS = {"continuous": "#1f77b4", "isolated": "#ff7f0e"}
#: The SQNR chart labels its tensors by name up to this many, by table number beyond.
NAMED_TICKS = 40
_FONT = 'font-family="sans-serif" font-size="11"'


def _finite(value: float, cap: float) -> float:
    return cap if not math.isfinite(value) else value


def _fmt(value: float, digits: int = 2) -> str:
    if math.isnan(value):
        return "n/a"
    if not math.isfinite(value):
        return "exact" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def sqnr_chart_svg(modes: Mapping[str, Sequence[TensorMetrics]], width: int = 1100, height: int = 300) -> str:
    """An SVG line chart of SQNR (dB) per tensor, one line per mode; exact tensors drawn at the top.

    The drawing is ``width`` wide whatever the number of tensors (the page scales it to its
    width): up to :data:`NAMED_TICKS` tensors are labelled by name, more by their table number
    (``#k``), every few, so labels never overlap.
    """
    names = [m.name for m in next(iter(modes.values()))]
    values = [m.sqnr for ms in modes.values() for m in ms if math.isfinite(m.sqnr)]
    top = 10 * math.ceil((max(values, default=60.0) + 1) / 10)
    bottom = min(0, 10 * math.floor(min(values, default=0.0) / 10))
    named = len(names) <= NAMED_TICKS
    left, right, upper, lower = 48, 150 if named else 20, 24, 110 if named else 40
    plot_w, plot_h = width - left - right, height - upper - lower
    every = max(1, math.ceil(len(names) / (NAMED_TICKS if named else plot_w // 36)))
    step = plot_w / max(len(names) - 1, 1)
    dot = 3 if step >= 6 else 1.5

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
        if named:
            label = html.escape(name if len(name) <= 28 else name[:27] + "…")
            parts.append(f'<text x="{x(i):.1f}" y="{upper + plot_h + 10}" transform="rotate(45 {x(i):.1f} '
                         f'{upper + plot_h + 10})" {_FONT}>{label}</text>')
        else:
            parts.append(f'<text x="{x(i):.1f}" y="{upper + plot_h + 14}" text-anchor="middle" {_FONT}>#{i}</text>')
    for k, (mode, metrics) in enumerate(modes.items()):
        color = _COLORS.get(mode, "#2ca02c")
        points = " ".join(f"{x(i):.1f},{y(m.sqnr):.1f}" for i, m in enumerate(metrics))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="{min(2, dot)}"/>')
        parts.extend(f'<circle cx="{x(i):.1f}" cy="{y(m.sqnr):.1f}" r="{dot}" fill="{color}"/>'
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


def precision_curve_svg(found: Mapping[str, Any], width: int = 720, height: int = 260) -> str:
    """The mixed-precision search's accuracy against cost: the predicted walk (line) and the integer program's
    measured points (dots), x the share of MACs with a 16-bit operand, y the output SQNR; the target dashed."""
    curve = [(float(c), float(v)) for c, v in found.get("curve", [])]
    measured = [(float(c), float(v)) for _, c, v in found.get("measured", [])]
    values = [v for _, v in curve + measured if math.isfinite(v)] + [float(found["target_db"])]
    top, bottom = 5 * math.ceil(max(values) / 5 + 0.2), 5 * math.floor(min(values) / 5 - 0.2)
    left, right, upper, lower = 48, 16, 16, 36
    plot_w, plot_h = width - left - right, height - upper - lower
    right_edge = max([c for c, _ in curve + measured] + [1e-3])

    def x(c: float) -> float:
        return left + plot_w * c / right_edge

    def y(v: float) -> float:
        return upper + plot_h * (top - min(max(v, bottom), top)) / (top - bottom)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="white"/>']
    for tick in range(bottom, top + 1, max(5, 5 * ((top - bottom) // 30))):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y(tick) + 4:.1f}" text-anchor="end" {_FONT}>{tick}</text>')
    for k in range(5):
        c = right_edge * k / 4
        parts.append(f'<text x="{x(c):.1f}" y="{height - 18}" text-anchor="middle" {_FONT}>{100 * c:.1f} %</text>')
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 4}" text-anchor="middle" {_FONT}>share of MACs '
                 f'with a 16-bit operand</text>')
    target = y(float(found["target_db"]))
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{target:.1f}" y2="{target:.1f}" stroke="#d62728" '
                 f'stroke-dasharray="5,4"/><text x="{width - right}" y="{target - 4:.1f}" text-anchor="end" '
                 f'{_FONT}>target {float(found["target_db"]):.1f} dB</text>')
    points = " ".join(f"{x(c):.1f},{y(v):.1f}" for c, v in curve)
    parts.append(f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    parts.extend(f'<circle cx="{x(c):.1f}" cy="{y(v):.1f}" r="4" fill="#ff7f0e"/>' for c, v in measured)
    parts.append(f'<text x="{left + 8}" y="{upper + 12}" {_FONT}>line: the simulated walk; dots: the integer '
                 'program</text>')
    parts.append("</svg>")
    return "".join(parts)


def _precision_section(found: Optional[Mapping[str, Any]]) -> list[str]:
    """The mixed-precision search's choice and curve, when the run made one."""
    if not found:
        return []
    met = "met" if found.get("met") else "NOT met"
    wide = ", ".join(f"<code>{html.escape(t)}</code>" for t in found.get("wide_tensors", [])) or "none"
    return [f"<h2>Mixed precision: output SQNR against cost</h2><p>Target {float(found['target_db']):.2f} dB "
            f"({met}): {len(found.get('wide_tensors', []))} tensors at 16 bits, a 16-bit operand in "
            f"{100 * float(found.get('mac_fraction', 0.0)):.2f} % of the MACs; the integer program measures "
            f"{float(found.get('sqnr_db', 0.0)):.2f} dB on the calibration batches it was searched on. 16 bits: "
            f"{wide}.</p>", _img(precision_curve_svg(found), "mixed precision: SQNR against cost", "chart")]


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
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1400px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f0f0f0; position: sticky; top: 0; }
table.sortable th { cursor: pointer; } table.sortable th:hover { background: #e0e8f0; }
th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
td.name { text-align: left; font-family: monospace; min-width: 8em; max-width: 24em; overflow-wrap: anywhere; }
td.source { min-width: 16em; } td.tensor { min-width: 12em; } td.op { white-space: nowrap; } th { min-width: 3em; }
tr.low td { background: #fde2e1; }
.scroll { max-width: 100%; overflow-x: auto; }
.scroll.tall { max-height: 80vh; overflow-y: auto; }
img.chart { width: 100%; max-width: 1100px; height: auto; }
.hists { display: flex; flex-wrap: wrap; } .hists img { margin: 4px; border: 1px solid #eee; max-width: 100%; }
#filter { width: 28em; max-width: 100%; margin: 6px 0; }
"""

_SCRIPT = """
(function () {
  function cells(row, col) {
    var cell = row.cells[col], v = cell.getAttribute("data-v");
    return v === null ? cell.textContent.toLowerCase() : parseFloat(v);
  }
  function sortable(table) {  // click a header: sort by it; again: reverse
    var body = table.tBodies[0], heads = table.tHead.rows[0].cells;
    function sortBy(col, desc) {
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = cells(a, col), y = cells(b, col), c = x < y ? -1 : x > y ? 1 : 0;
        return desc ? -c : c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
      Array.prototype.forEach.call(heads, function (h, k) {
        h.classList.toggle("asc", k === col && !desc); h.classList.toggle("desc", k === col && desc);
      });
    }
    Array.prototype.forEach.call(heads, function (h, k) {
      h.title = "sort (click again to reverse)";
      h.addEventListener("click", function () { sortBy(k, h.classList.contains("asc")); });
    });
    return function (name, desc) {
      Array.prototype.forEach.call(heads, function (h, k) { if (h.textContent === name) sortBy(k, desc); });
    };
  }
  var sorts = Array.prototype.map.call(document.querySelectorAll("table.sortable"), sortable);
  var table = document.getElementById("tensors"), filter = document.getElementById("filter");
  var rows = Array.prototype.slice.call(table.tBodies[0].rows), count = document.getElementById("shown");
  function applyFilter() {  // rows holding every word typed
    var words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean), n = 0;
    rows.forEach(function (r) {
      var text = r.getAttribute("data-text"), hit = words.every(function (w) { return text.indexOf(w) >= 0; });
      r.style.display = hit ? "" : "none"; n += hit ? 1 : 0;
    });
    count.textContent = n + " of " + rows.length;
  }
  filter.addEventListener("input", applyFilter);
  // a link can carry a view of the full table: report.html#filter=int4%20conv&sort=SQNR%20dB%20(isolated)&desc
  var view = {};
  location.hash.slice(1).split("&").forEach(function (p) {
    var kv = p.split("="); if (kv[0]) view[decodeURIComponent(kv[0])] = decodeURIComponent(kv[1] || "");
  });
  if (view.filter) filter.value = view.filter;
  if (view.sort) sorts[sorts.length - 1](view.sort, "desc" in view);
  applyFilter();
  window.addEventListener("load", function () {
    var shown = rows.filter(function (r) { return r.offsetHeight > 0; });
    shown.sort(function (a, b) { return a.getBoundingClientRect().top - b.getBoundingClientRect().top; });
    var imgs = document.querySelectorAll("img"), page = document.documentElement;
    var loaded = Array.prototype.filter.call(imgs, function (i) { return i.complete && i.naturalWidth > 0; }).length;
    document.body.setAttribute("data-rendered", JSON.stringify({
      rows: shown.length, images: imgs.length, loaded: loaded,
      first: shown.length ? shown[0].cells[1].textContent : "",
      page_width: page.scrollWidth, window_width: window.innerWidth,
      chart_width: document.querySelector("img.chart").getBoundingClientRect().width}));
  });
})();
"""

_INTRO = ("<p>Float and quantized programs on the same {batches} evaluation batch(es). "
          "<b>continuous</b>: the quantized program feeds itself (error accumulated up to the tensor); "
          "<b>isolated</b>: each tensor's producer is fed the float values, quantized "
          "(error the op adds on its own). SQNR = 10 log10(&Sigma;float&sup2; / &Sigma;(float &minus; "
          "dequantized)&sup2;). A tensor is named after its first reader "
          "(<code>conv2d_2.input</code> is what the layer before <code>conv2d_2</code> computes) or after its "
          "producer (<code>conv2d_2.output</code>); <i>name in the model</i> is the model file's own name of the "
          "node computing it, <i>computed by</i> the integer op that makes it; <i>weight bits</i> are those of "
          "the fused layer computing it, <i>bits</i> the tensor's own.</p>")


def _cells(i: int, m: TensorMetrics, mode_names: Sequence[str], by_mode: Mapping[str, Mapping[str, TensorMetrics]],
           compact: bool = False) -> list[str]:
    """One table row's cells (:func:`_heads`); numeric cells carry their value in ``data-v`` (for sorting)."""
    def num(value: float, shown: str) -> str:
        v = value if math.isfinite(value) else (1e300 if value > 0 else -1e300)
        return f'<td data-v="{v:.17g}">{shown}</td>' if not math.isnan(value) else '<td data-v="-1e300">n/a</td>'

    cells = [num(i, str(i)), f'<td class="name tensor">{html.escape(m.name)}</td>',
             f'<td class="name source">{html.escape(m.source or "-")}</td>',
             f'<td class="name op">{html.escape(m.producer)}</td>',
             num(m.weight_bits, str(m.weight_bits) if m.weight_bits else "-"), num(m.bits, str(m.bits))]
    if not compact:
        cells += [f"<td>{m.dtype}</td>", num(m.scale, f"{m.scale:.6g}"), num(m.zero_point, str(m.zero_point))]
    for mode in mode_names:
        mm = by_mode[mode].get(m.name)
        values = [] if mm is None else [num(mm.sqnr, _fmt(mm.sqnr)), num(mm.cosine, f"{mm.cosine:.5f}")] + (
            [] if compact else [num(mm.mse, f"{mm.mse:.3g}"), num(mm.max_abs_error, f"{mm.max_abs_error:.4g}")])
        cells += values or ['<td data-v="-1e300">-</td>'] * (2 if compact else 4)
    return cells


def _heads(mode_names: Sequence[str], compact: bool) -> list[str]:
    heads = ["#", "tensor", "name in the model", "computed by", "weight bits", "bits"]
    heads += [] if compact else ["dtype", "scale", "zero point"]
    for mode in mode_names:
        heads += [f"SQNR dB ({mode})", f"cosine ({mode})"] + ([] if compact else [f"MSE ({mode})",
                                                                                  f"max error ({mode})"])
    return heads


def _table(table_id: str, rows: Sequence[tuple[int, TensorMetrics]], mode_names: Sequence[str],
           by_mode: Mapping[str, Mapping[str, TensorMetrics]], key_mode: str, warn_db: float,
           compact: bool = False) -> str:
    """A tensor table (all tensors, or the worst ones ``compact``): sortable headers, one row per tensor."""
    heads = _heads(mode_names, compact)
    out = [f'<table id="{table_id}" class="sortable"><thead><tr>{"".join(f"<th>{h}</th>" for h in heads)}</tr>'
           "</thead><tbody>"]
    for i, m in rows:
        low = m.name in by_mode[key_mode] and by_mode[key_mode][m.name].sqnr < warn_db
        text = html.escape(" ".join([m.name, m.source, m.producer, m.dtype, f"int{m.weight_bits}" if m.weight_bits
                                     else ""]).lower(), quote=True)
        out.append(f'<tr data-text="{text}"{" class=low" if low else ""}>'
                   f'{"".join(_cells(i, m, mode_names, by_mode, compact))}</tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _summary(modes: Mapping[str, Sequence[TensorMetrics]], output_metrics: Optional[Mapping[str, float]]) -> str:
    items = []
    for mode, metrics in modes.items():
        low_m = min(metrics, key=lambda m: _finite(m.sqnr, math.inf), default=None)
        if low_m is not None:
            named = f" = {html.escape(low_m.source)}" if low_m.source else ""
            items.append(f"<li>lowest SQNR ({html.escape(mode)}): <code>{html.escape(low_m.name)}</code>{named} "
                         f"(computed by {html.escape(low_m.producer or '?')}) {_fmt(low_m.sqnr)} dB</li>")
    for name, value in (output_metrics or {}).items():
        items.append(f"<li>output {html.escape(name)}: {_fmt(value, 4)}</li>")
    return f'<ul id="summary">{"".join(items)}</ul>'


def write_html(path: Union[str, pathlib.Path], modes: Mapping[str, Sequence[TensorMetrics]], *,
               model: str = "", eval_batches: int = 0, output_metrics: Optional[Mapping[str, float]] = None,
               worst: int = 4, warn_db: float = 30.0, worst_rows: int = 20,
               precision: Optional[Mapping[str, Any]] = None) -> pathlib.Path:
    """Write the report page; ``modes`` maps "continuous" / "isolated" to metrics in program order.

    The page: a summary, the ``worst_rows`` lowest-SQNR tensors (isolated mode, else the first),
    the SQNR chart (scaled to the page width), every tensor in a table that sorts by any column
    (click its header) and filters by words (tensor, model name, op, dtype, ``int4`` for 4-bit
    weights), and histograms of the ``worst`` tensors. A link ``report.html#filter=WORDS&sort=COLUMN&desc``
    opens that view. ``precision``: the quantize report's ``mixed_precision`` (its curve, when a search ran).
    """
    if not modes or not any(modes.values()):
        raise ValueError("write_html: no quantized tensor to report")
    mode_names = list(modes)
    first = modes[mode_names[0]]
    by_mode = {mode: {m.name: m for m in ms} for mode, ms in modes.items()}
    # where accuracy is lost: the isolated mode (each op's own error) when there, else the first mode
    key_mode = "isolated" if "isolated" in modes else mode_names[0]
    ranked = sorted(enumerate(first), key=lambda im: _finite(by_mode[key_mode][im[1].name].sqnr, math.inf)
                    if im[1].name in by_mode[key_mode] else math.inf)
    lowest = [m for _, m in ranked[: max(worst, 0)]]
    title = f"tvm-sima per-layer accuracy: {pathlib.Path(model).name or 'model'}"
    out: list[str] = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">',
                      f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
                      f"<h1>{html.escape(title)}</h1>", _INTRO.format(batches=eval_batches),
                      _summary(modes, output_metrics)]
    shown = ranked[: max(worst_rows, 0)]
    out.append(f"<h2>The {len(shown)} lowest-SQNR tensors ({html.escape(key_mode)})</h2><div class=scroll>"
               + _table("worst", shown, mode_names, by_mode, key_mode, warn_db, compact=True) + "</div>")
    out.extend(_precision_section(precision))
    out.append("<h2>SQNR per tensor</h2>")
    out.append(_img(sqnr_chart_svg(modes), "SQNR per tensor in program order", "chart"))
    out.append(f'<h2>All {len(first)} tensors</h2><input id="filter" type="search" '
               'placeholder="filter: words of the tensor, model name, op, dtype, int4 ..."> '
               '<span id="shown"></span><div class="scroll tall">'
               + _table("tensors", list(enumerate(first)), mode_names, by_mode, key_mode, warn_db) + "</div>")
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
                 worst: int = 4, precision: Optional[Mapping[str, Any]] = None,
                 ) -> tuple[pathlib.Path, pathlib.Path]:
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
                           output_metrics=output_metrics, worst=worst, precision=precision)
    return json_path, html_path
