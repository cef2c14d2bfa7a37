"""The report of one realize run (:func:`tvm_sima.passes.realize.realize`): what was realized how."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["RealizeReport"]


@dataclass
class RealizeReport:
    """What realize did: fused layers, integer ops by type, ops left in float and why.

    ``sources``: the model's own name (:mod:`tvm_sima.source_names`) of each layer, tensor and
    float op's tensor named here, when the module carries them; ``layer_outputs``: the fused
    layer computing each tensor a fused op outputs.
    """

    fused: list[str] = field(default_factory=list)
    integer_ops: Counter = field(default_factory=Counter)
    float_ops: list[tuple[str, str, str]] = field(default_factory=list)  # (op, tensor, reason)
    notes: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    layer_outputs: dict[str, str] = field(default_factory=dict)
    grids: list[dict] = field(default_factory=list)  # GridVerdict.to_dict() of each collapsed tensor
    scales: list[dict] = field(default_factory=list)  # ScaleChoice.to_dict() of each searched layer
    roundings: list[dict] = field(default_factory=list)  # AdaRoundChoice.to_dict() of each AdaRounded layer

    def named(self, tensor: str) -> str:
        """``tensor`` after its source name, ``p2o.Add.3 (add@3.output)``, when it has one."""
        return f"{self.sources[tensor]} ({tensor})" if self.sources.get(tensor) else tensor

    def summary(self) -> str:
        lines = [f"fused conv/dense layers: {len(self.fused)}",
                 "integer ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.integer_ops.items()))]
        if self.float_ops:
            lines.append(f"left in float ({len(self.float_ops)}):")
            lines += [f"  {op} -> {self.named(tensor)}: {reason}" for op, tensor, reason in self.float_ops]
        for grid in self.grids:
            verb = "re-gridded" if grid["rescued"] else "COLLAPSED, not rescued"
            lines.append(f"{verb}: {self.named(grid['tensor'])}: {grid['problem']}; {grid['choice']}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"fused": list(self.fused), "integer_ops": dict(self.integer_ops),
                "float_ops": [{"op": o, "tensor": t, "source": self.sources.get(t, ""), "reason": r}
                              for o, t, r in self.float_ops],
                "notes": list(self.notes), "sources": {k: v for k, v in self.sources.items() if v},
                "layer_outputs": dict(self.layer_outputs),
                "rescued": [g for g in self.grids if g["rescued"]], "scale_search": list(self.scales),
                "adaround": list(self.roundings),
                "collapsed": [g for g in self.grids if not g["rescued"]]}
