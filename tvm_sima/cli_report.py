"""What ``tvm-sima report`` says about the model's output: which metrics, their scores, the table.

* :func:`default_metrics`: without ``--metric``, cosine / sqnr / max_abs_error always, and top1 only
  where a class index means something: the data has labels, or the (first) output is a
  ``(batch, classes)`` score vector with more than one class (trailing 1s allowed, as in
  ``(1, 1000, 1, 1)``). A segmentation map or a detector's boxes get no top1 (its "accuracy"
  would be noise), and the command prints one line saying why;
* :func:`output_scores` runs the metrics over the ``(float, quantized)`` outputs, adding the float
  model's own top-1 when there are labels; :func:`print_report` prints the per-tensor table.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

__all__ = ["DEFAULT_METRICS", "FloatOnly", "default_metrics", "nonfinite_batch", "output_scores", "print_report"]

#: The output metrics of ``report`` on a classifier (top1 dropped for other outputs, see default_metrics).
DEFAULT_METRICS = ["top1", "cosine", "sqnr", "max_abs_error"]


def default_metrics(dims: Sequence[Optional[int]], shown: str, labelled: bool) -> tuple[list[str], Optional[str]]:
    """The default metric names for an output of shape ``dims`` (None where symbolic), and a note.

    Parameters
    ----------
    dims : sequence of int or None
        The model's first output shape; empty for a tuple or scalar output.
    shown : str
        How to print that output in the note (``float32[1, 1, 8, 8]``).
    labelled : bool
        Whether the evaluation data has labels (then top1 is an accuracy, always kept).

    Returns
    -------
    names, note : list of str, str or None
        The metric names, and the line explaining why top1 is left out (None when it is kept).
    """
    rest = [d for d in dims[1:] if d != 1]
    scores = len(dims) >= 2 and len(rest) == 1 and rest[0] is not None and rest[0] > 1 and dims[1] == rest[0]
    if labelled or scores:
        return list(DEFAULT_METRICS), None
    note = (f"output metrics: top1 left out: the output {shown or '(a tuple or scalar)'} is not a (batch, classes) "
            "score vector and the evaluation data has no labels (add --metric top1 to get it anyway)")
    return [m for m in DEFAULT_METRICS if not m.startswith("top")], note


def nonfinite_batch(outputs: Sequence[tuple[Any, Any]]) -> Optional[int]:
    """The first batch whose float output holds NaN / Inf (None when all are finite)."""
    import numpy as np

    return next((k for k, (reference, _) in enumerate(outputs) if not np.isfinite(reference).all()), None)


def output_scores(metrics: dict[str, Any], outputs: list, labels: Optional[list]) -> dict[str, float]:
    """Each metric over ``outputs`` (``(float, quantized)`` per batch); with labels, also ``float_top1``."""
    from tvm_sima.plugins import get_metric

    if labels is not None:  # the float model's accuracy, beside the quantized one's
        metrics = {**metrics, "float_top1": FloatOnly(get_metric("top1"))}
    for metric in metrics.values():
        for (reference, test), label in zip(outputs, labels or [None] * len(outputs), strict=True):
            metric.update(reference, test, label)
    return {name: float(metric.result()) for name, metric in metrics.items()}


class FloatOnly:
    """A metric of the float model's output alone (its top-1 against the labels)."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric

    def update(self, reference: Any, test: Any, labels: Any) -> None:
        self.metric.update(reference, reference, labels)

    def result(self) -> float:
        return float(self.metric.result())


#: ``print_report`` lists every tensor up to this many; beyond, the lowest-SQNR ones (the page has them all).
PRINTED_TENSORS = 40


def print_report(results: dict[str, list], scores: dict[str, float], batches: int, labelled: bool) -> None:
    """Print the per-tensor SQNR table (one column per mode), the lowest SQNR per mode and the output scores.

    A model of more than :data:`PRINTED_TENSORS` tensors gets its lowest-SQNR ones (isolated mode,
    else the first), with the model's own name of the node computing each.
    """
    modes = list(results)
    by_mode = {mode: {m.name: m for m in ms} for mode, ms in results.items()}
    rows = results[modes[0]]
    if len(rows) > PRINTED_TENSORS:
        key = by_mode["isolated" if "isolated" in by_mode else modes[0]]
        rows = sorted(rows, key=lambda m: key[m.name].sqnr if m.name in key else float("inf"))[:PRINTED_TENSORS // 2]
        print(f"the {len(rows)} lowest-SQNR of {len(results[modes[0]])} tensors (all in report.html):")
    print(f"{'tensor':28s} {'computed by':16s} {'scale':>10s} " + " ".join(f"{'SQNR ' + mode[:4]:>10s}"
                                                                          for mode in modes) + "  name in the model")
    for m in rows:
        print(f"{m.name[:28]:28s} {m.producer[:16]:16s} {m.scale:10.6f} "
              + " ".join(f"{by_mode[mode][m.name].sqnr:10.2f}" for mode in modes if m.name in by_mode[mode])
              + f"  {m.source}")
    for mode in modes:
        worst = min(results[mode], key=lambda m: m.sqnr)
        print(f"lowest SQNR ({mode}): {worst.name} ({worst.sqnr:.2f} dB)")
    kind = "against labels" if labelled else "agreement with float"
    topk = f"; top-k {kind}" if any(name.startswith(("top", "float_top")) for name in scores) else ""
    print("output: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()) + f" ({batches} batches{topk})")
