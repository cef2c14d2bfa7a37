"""Task metrics of the real-model zoo (``bench_zoo.py``), in NumPy only.

Every function takes the outputs of a run as one list per evaluation input (each a list of the
model's output arrays, in the model's output order) and compares them with the float model's
(``ref``) or with labels. Pooled metrics (SQNR, IoU) sum over all inputs before dividing, so an
input with an empty mask or a silent output does not count as a perfect score.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Outputs = Sequence[Sequence[np.ndarray]]  # [input][output] -> array

#: MediaPipe clips detector logits to +-100 before the sigmoid (``score_clipping_thresh``).
SCORE_CLIP = 100.0


def sqnr_db(ref: Sequence[np.ndarray], out: Sequence[np.ndarray]) -> float:
    """``10 log10(sum ref^2 / sum (ref - out)^2)`` over all arrays; ``inf`` when they are equal."""
    if len(ref) != len(out) or not ref:
        raise ValueError(f"sqnr_db: {len(ref)} reference arrays against {len(out)} outputs (need the same, > 0)")
    signal = sum(float(np.square(r.astype(np.float64)).sum()) for r in ref)
    noise = sum(float(np.square(r.astype(np.float64) - o).sum()) for r, o in zip(ref, out, strict=True))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def output_sqnr(ref: Outputs, out: Outputs, index: int) -> float:
    """SQNR of output ``index`` pooled over the inputs."""
    return sqnr_db([r[index] for r in ref], [o[index] for o in out])


def sqnr_gap(ref: Outputs, ours: Outputs, theirs: Outputs, index: int, draws: int = 2000,
             seed: int = 0) -> tuple[float, float, float]:
    """``output_sqnr(ours) - output_sqnr(theirs)`` (dB) and its 95 % paired-bootstrap interval over the inputs.

    Both runs share the signal, so the gap is ``10 log10(their noise / our noise)``, each pooled over the
    inputs; each draw resamples the evaluation inputs with replacement (the same ones for both runs). An
    interval that holds 0 says the evaluation cannot tell the two apart.
    """
    def energies(out: Outputs) -> np.ndarray:
        return np.array([float(np.square(r[index].astype(np.float64) - o[index]).sum())
                         for r, o in zip(ref, out, strict=True)])

    a, b = energies(ours), energies(theirs)
    if a.sum() == 0.0 or b.sum() == 0.0:
        raise ValueError("sqnr_gap: one run equals the reference exactly (infinite SQNR)")
    counts = np.random.default_rng(seed).multinomial(len(ref), np.full(len(ref), 1.0 / len(ref)), size=draws)
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = 10.0 * (np.log10(counts @ b) - np.log10(counts @ a))
    gaps = np.nan_to_num(gaps, nan=0.0)  # a draw of inputs neither run has noise on: no difference
    low, high = np.percentile(gaps, [2.5, 97.5])
    return 10.0 * float(np.log10(b.sum() / a.sum())), float(low), float(high)


def face_scores(classificators: np.ndarray) -> float:
    """BlazeFace's face score of one image: ``sigmoid(clip(max logit, -100, 100))`` over the anchors."""
    logit = float(np.clip(np.max(classificators), -SCORE_CLIP, SCORE_CLIP))
    return float(1.0 / (1.0 + np.exp(-logit)))


def face_accuracy(outs: Outputs, labels: np.ndarray, index: int, threshold: float = 0.5) -> float:
    """Fraction of images whose face score (output ``index``) is above ``threshold`` exactly when labelled 1."""
    predicted = np.array([face_scores(o[index]) > threshold for o in outs])
    return float(np.mean(predicted == np.asarray(labels, dtype=bool)))


def landmark_error_px(ref: Outputs, out: Outputs, indices: Sequence[int], dims: int = 3) -> float:
    """Mean Euclidean distance (x, y; in input pixels) between the landmarks of ``out`` and ``ref``.

    Outputs ``indices`` hold ``dims`` values per landmark (x, y, z); z is left out.
    """
    dists = []
    for r, o in zip(ref, out, strict=True):
        for i in indices:
            a = np.asarray(r[i], dtype=np.float64).reshape(-1, dims)[:, :2]
            b = np.asarray(o[i], dtype=np.float64).reshape(-1, dims)[:, :2]
            dists.append(np.linalg.norm(a - b, axis=1))
    return float(np.mean(np.concatenate(dists)))


def ssd_anchors(size: int, strides: Sequence[int], per_layer: int = 2) -> np.ndarray:
    """Anchor centres ``(N, 2)`` (x, y in [0, 1]) of MediaPipe's SSD anchors with a fixed anchor size.

    Layers of the same stride share one grid with ``per_layer`` anchors each (MediaPipe's
    ``SsdAnchorsCalculator`` with aspect ratio 1 and the interpolated scale: 2 per layer); cells in
    row-major order, the anchors of a cell consecutive.
    """
    centres = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        cells = int(np.ceil(size / strides[i]))
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_layer * (j - i), axis=0))
        i = j
    return np.concatenate(centres).astype(np.float64)


def decode_box(raw: np.ndarray, anchor: np.ndarray, size: int) -> np.ndarray:
    """``(x0, y0, x1, y1)`` in [0, 1] of one SSD regression row (x, y, w, h first, in input pixels)."""
    cx, cy = raw[0] / size + anchor[0], raw[1] / size + anchor[1]
    w, h = raw[2] / size, raw[3] / size
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when both are empty)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _best_boxes(outs: Outputs, boxes: int, scores: int, anchors: np.ndarray, size: int) -> list:
    best = []
    for o in outs:
        k = int(np.argmax(np.asarray(o[scores]).ravel()))
        best.append((k, decode_box(np.asarray(o[boxes]).reshape(len(anchors), -1)[k], anchors[k], size)))
    return best


def best_anchor_agreement(ref: Outputs, out: Outputs, boxes: int, scores: int, anchors: np.ndarray,
                          size: int) -> float:
    """Fraction of inputs whose highest-scoring anchor is the float model's."""
    pairs = zip(_best_boxes(ref, boxes, scores, anchors, size), _best_boxes(out, boxes, scores, anchors, size),
                strict=True)
    return float(np.mean([r[0] == o[0] for r, o in pairs]))


def best_box_iou(ref: Outputs, out: Outputs, boxes: int, scores: int, anchors: np.ndarray, size: int) -> float:
    """Mean IoU between the best-scoring box of ``out`` and that of ``ref`` (each its own best anchor)."""
    pairs = zip(_best_boxes(ref, boxes, scores, anchors, size), _best_boxes(out, boxes, scores, anchors, size),
                strict=True)
    return float(np.mean([box_iou(r[1], o[1]) for r, o in pairs]))


def mask_iou(ref: Outputs, out: Outputs, index: int, threshold: float) -> float:
    """Pooled IoU of ``output > threshold`` against the float model's (1 when both are empty everywhere)."""
    inter = union = 0
    for r, o in zip(ref, out, strict=True):
        a, b = np.asarray(r[index]) > threshold, np.asarray(o[index]) > threshold
        inter += int(np.logical_and(a, b).sum())
        union += int(np.logical_or(a, b).sum())
    return float(inter / union) if union else 1.0


def label_agreement(ref: Outputs, out: Outputs, index: int) -> float:
    """Fraction of inputs whose argmax of output ``index`` is the float model's (top-1 agreement)."""
    return float(np.mean([int(np.argmax(r[index])) == int(np.argmax(o[index])) for r, o in zip(ref, out, strict=True)]))


def confident_agreement(ref: Outputs, out: Outputs, index: int, min_probability: float) -> float:
    """:func:`label_agreement` on the inputs whose float softmax gives its top-1 class at least ``min_probability``
    (photo crops with no object of the 1000 classes make near-ties that any rounding flips); NaN when none is."""
    sure = [i for i, r in enumerate(ref)
            if float(np.max(_softmax(np.asarray(r[index], np.float64)))) >= min_probability]
    if not sure:
        return float("nan")
    return label_agreement([ref[i] for i in sure], [out[i] for i in sure], index)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z.ravel() - z.max())
    return e / e.sum()


def ctc_greedy(probs: np.ndarray, blank: int = 0) -> tuple[int, ...]:
    """Greedy CTC decoding of ``(..., T, classes)``: per-step argmax, repeats merged, blanks dropped."""
    best = np.argmax(np.asarray(probs).reshape(-1, np.shape(probs)[-1]), axis=1)
    merged = [int(c) for i, c in enumerate(best) if i == 0 or c != best[i - 1]]
    return tuple(c for c in merged if c != blank)


def ctc_agreement(ref: Outputs, out: Outputs, index: int) -> float:
    """Fraction of inputs whose greedy CTC sequence equals the float model's."""
    return float(np.mean([ctc_greedy(r[index]) == ctc_greedy(o[index]) for r, o in zip(ref, out, strict=True)]))
