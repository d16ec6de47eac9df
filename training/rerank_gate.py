"""The re-ranker's gate: a re-ranker ships only if it does not rank worse than its first stage.

A share of the re-ranker's groups (``reranker.gate_share`` of the sampled members) is held out of
its training. Each held-out member's candidate pool is ranked twice: in the first stage's (blended)
order, and by the model's scores as the service would compute them (ONNX). Both orders are scored
against the member's labels after the cutoff with NDCG@10 (graded, LABEL_GAIN) and HR@10 (a labelled
candidate in the top 10), averaged over the held-out members with a labelled candidate in their
pool (the others score 0 in both orders and say nothing about the order).

"Not worse": the re-ranked NDCG@10 and HR@10 are each >= the first stage's x (1 -
``reranker.gate_tolerance``), the rule `train --gate` applies to a new bundle against the live one.
A tolerance of 0 ships only a re-ranker that is at least as good on both. The paired difference of
NDCG@10 (mean and standard error over the same members) is recorded beside it, so a reader can tell
a refusal by noise from a real loss. No labelled held-out member: nothing to compare, not shipped.

The gate compares the two orders on the labels the re-ranker learns from; it cannot tell that the
labels themselves are the wrong target (a file's order taken for time): that is the label split's
job (training/reranker.py ``label_split``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from service.bundle_manifest import RerankerValid

if TYPE_CHECKING:
    from training.reranker import Rows

#: Gain per relevance level: 0 = no event after the cutoff, then 1 + index in EVENT_TYPES.
LABEL_GAIN = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)  # none, view, click, fav, cart, purchase
K = 10


def per_group(rows: Rows, scores: np.ndarray | None, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """(NDCG@k, hit@k) of each group with a labelled candidate; ``scores`` None = first-stage order
    (the rows' own order inside each group). Ties keep the first-stage order."""
    gains = np.asarray(LABEL_GAIN)[rows.y]
    disc = 1.0 / np.log2(np.arange(k) + 2)
    ndcg, hit, start = [], [], 0
    for size in rows.groups.tolist():
        g = gains[start:start + size]
        if g.any():
            order = np.arange(size) if scores is None else np.argsort(-scores[start:start + size],
                                                                     kind="stable")
            top, ideal = g[order][:k], np.sort(g)[::-1][:k]
            ndcg.append(float((top * disc[:len(top)]).sum() / (ideal * disc[:len(ideal)]).sum()))
            hit.append(float(top.any()))
        start += size
    return np.asarray(ndcg), np.asarray(hit)


@dataclass(frozen=True)
class Verdict:
    """The gate's figures on the held-out groups and whether the re-ranker ships."""

    shipped: bool
    groups: int  # held-out members with a pool
    labelled_groups: int  # of them, with a labelled candidate in the pool (what is averaged)
    first_ndcg: float
    rerank_ndcg: float
    first_hr: float
    rerank_hr: float
    diff_ndcg: float  # mean paired re-ranked - first-stage NDCG@10
    diff_se: float  # its standard error
    tolerance: float

    @property
    def figures(self) -> str:
        """Both orders' figures in one phrase, for the run's output and the manifest's reason."""
        return (f"re-ranked NDCG@10 {self.rerank_ndcg:.4f} vs first stage {self.first_ndcg:.4f}, "
                f"HR@10 {self.rerank_hr:.4f} vs {self.first_hr:.4f} on {self.labelled_groups:,} "
                f"held-out members (paired NDCG@10 difference {self.diff_ndcg:+.4f} "
                f"± {self.diff_se:.4f} s.e.)")

    @property
    def reason(self) -> str:
        if not self.labelled_groups:
            return (f"the gate has no held-out member with a labelled candidate ({self.groups} held out): "
                    f"nothing to compare, so no re-ranker is shipped")
        if self.shipped:
            return f"the gate passed: {self.figures}"
        return (f"the gate refused: {self.figures}; it ranks worse than its first stage beyond the "
                f"tolerance of {self.tolerance:.0%} (reranker.gate_tolerance), so no re-ranker is shipped")

    def as_manifest(self) -> dict[str, Any]:
        """manifest["reranker"]["valid"] (typed by service.bundle_manifest.RerankerValid)."""
        return RerankerValid.model_validate({
            "groups": self.groups, "labelled_groups": self.labelled_groups,
            "first_stage_ndcg@10": round(self.first_ndcg, 4), "rerank_ndcg@10": round(self.rerank_ndcg, 4),
            "first_stage_hr@10": round(self.first_hr, 4), "rerank_hr@10": round(self.rerank_hr, 4),
            "ndcg@10_diff": round(self.diff_ndcg, 4), "ndcg@10_diff_se": round(self.diff_se, 4),
            "tolerance": self.tolerance, "shipped": self.shipped, "reason": self.reason,
        }).model_dump(by_alias=True)


def judge(rows: Rows, scores: np.ndarray, tolerance: float) -> Verdict:
    """The verdict on held-out ``rows`` (first-stage order inside each group) and the model's
    ``scores`` of them (see the module docstring for the rule)."""
    first_ndcg, first_hit = per_group(rows, None)
    new_ndcg, new_hit = per_group(rows, scores)
    n = len(first_ndcg)
    diff = new_ndcg - first_ndcg
    f_ndcg, r_ndcg, f_hr, r_hr = (float(a.mean()) if n else 0.0
                                  for a in (first_ndcg, new_ndcg, first_hit, new_hit))
    keep = 1.0 - tolerance
    shipped = bool(n) and r_ndcg >= f_ndcg * keep and r_hr >= f_hr * keep
    return Verdict(shipped, int(len(rows.groups)), n, f_ndcg, r_ndcg, f_hr, r_hr,
                   diff_ndcg=float(diff.mean()) if n else 0.0,
                   diff_se=float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0, tolerance=tolerance)


def hold_out(n: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """A mask over ``n`` sampled members: ``share`` of them (rounded, at least one) held out for the
    gate, drawn at random."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:max(1, round(share * n))]] = True
    return mask
