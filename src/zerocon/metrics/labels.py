"""Precision, recall and F1 of predicted multi-hot labels against ground truth.

Used to judge pseudo-labels (LANIT's CLIP labels) where the true attributes are known. Per-domain scores treat
each domain as a binary task; ``macro`` averages them over domains, ``micro`` pools every (image, domain)
decision. A domain that is never predicted has precision 0 (not a default of 1), and one that never occurs
has recall 0; such cases are counted, not hidden, and listed in ``undefined``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LabelScores:
    precision: float
    recall: float
    f1: float
    per_domain: dict[str, dict[str, float]] = field(default_factory=dict)
    micro: dict[str, float] = field(default_factory=dict)
    exact_match: float = 0.0
    """Share of images whose whole predicted label vector equals the truth."""
    undefined: list[str] = field(default_factory=list)
    """Domains with no predicted or no true positives (their precision or recall is reported as 0)."""

    def as_dict(self) -> dict:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "micro": self.micro,
            "exact_match": self.exact_match,
            "per_domain": self.per_domain,
            "undefined": self.undefined,
        }


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def label_scores(predicted, truth, domains: Sequence[str] | None = None) -> LabelScores:
    """Scores of ``predicted`` against ``truth``, both (images, domains) arrays of 0/1 (or bools)."""
    pred = np.asarray(predicted.detach().cpu() if hasattr(predicted, "detach") else predicted) > 0.5
    true = np.asarray(truth.detach().cpu() if hasattr(truth, "detach") else truth) > 0.5
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"predicted {pred.shape} and truth {true.shape} must be equal 2-D shapes")
    names = list(domains) if domains is not None else [str(i) for i in range(pred.shape[1])]
    if len(names) != pred.shape[1]:
        raise ValueError(f"{len(names)} domain names for {pred.shape[1]} columns")
    per_domain, undefined = {}, []
    for j, name in enumerate(names):
        tp = float((pred[:, j] & true[:, j]).sum())
        fp = float((pred[:, j] & ~true[:, j]).sum())
        fn = float((~pred[:, j] & true[:, j]).sum())
        if tp + fp == 0 or tp + fn == 0:
            undefined.append(name)
        p, r, f = _prf(tp, fp, fn)
        per_domain[name] = {"precision": p, "recall": r, "f1": f, "support": tp + fn}
    tp = float((pred & true).sum())
    fp = float((pred & ~true).sum())
    fn = float((~pred & true).sum())
    mp, mr, mf = _prf(tp, fp, fn)
    return LabelScores(
        precision=float(np.mean([d["precision"] for d in per_domain.values()])),
        recall=float(np.mean([d["recall"] for d in per_domain.values()])),
        f1=float(np.mean([d["f1"] for d in per_domain.values()])),
        per_domain=per_domain,
        micro={"precision": mp, "recall": mr, "f1": mf},
        exact_match=float((pred == true).all(axis=1).mean()) if len(pred) else 0.0,
        undefined=undefined,
    )
