"""What a predict step measures: the seeded sample of test ids a scenario sends, and one
defense's metrics over the answers (accuracy, attack success, flag precision/recall, latency
percentiles, errors)."""

from __future__ import annotations

from typing import Any

import numpy as np

from copur.evaluation.percentiles import percentile_ms
from copur.evaluation.scenarios.model import DefenseMetrics

__all__ = ["MAX_ERROR_MESSAGES", "predict_metrics", "sample_ids"]

MAX_ERROR_MESSAGES = 5
"""How many error messages a defense's metrics keep (the count keeps them all)."""


def sample_ids(test_ids: np.ndarray, samples: int, seed: int) -> list[int]:
    """A seeded sample of ``samples`` test ids (all of them when there are fewer), sorted."""
    rng = np.random.default_rng(seed)
    n = min(samples, len(test_ids))
    return sorted(int(i) for i in rng.choice(np.asarray(test_ids), size=n, replace=False))


def predict_metrics(
    answers: dict[int, Any],
    labels: dict[int, int],
    *,
    attackers: set[int],
    target: int | None,
    num_parties: int,
    latencies_s: list[float],
    errors: list[str],
    error_samples: int,
) -> DefenseMetrics:
    """The metrics of one defense at one predict step.

    ``answers``: sample id -> Prediction (answered samples only); ``attackers``: parties whose
    active policy corrupts (not none/drop); ``target``: the class of an active targeted attack.
    Accuracy is over answered samples (an abstention counts as wrong); flag precision/recall count
    (sample, party) pairs.
    """
    ids = sorted(answers)
    correct = sum(answers[i].label == labels[i] for i in ids)
    tp = fp = fn = 0
    missing = dict.fromkeys(range(num_parties), 0)
    for i in ids:
        flagged = set(answers[i].flagged_parties)
        tp += len(flagged & attackers)
        fp += len(flagged - attackers)
        fn += len(attackers - flagged)
        for p in answers[i].missing_parties:
            missing[int(p)] = missing.get(int(p), 0) + 1
    asr: float | None = None
    if target is not None:
        eligible = [i for i in ids if labels[i] != target]
        if eligible:
            asr = sum(answers[i].label == target for i in eligible) / len(eligible)
    return DefenseMetrics(
        answered=len(ids),
        accuracy=correct / len(ids) if ids else None,
        attack_success_rate=asr,
        flag_precision=tp / (tp + fp) if tp + fp else None,
        flag_recall=tp / (tp + fn) if attackers and ids else None,
        latency_p50_ms=percentile_ms(latencies_s, 50),
        latency_p99_ms=percentile_ms(latencies_s, 99),
        requests=len(latencies_s) + len(errors),
        missing={str(p): c for p, c in sorted(missing.items())},
        errors=len(errors),
        error_samples=error_samples,
        error_messages=errors[:MAX_ERROR_MESSAGES],
    )
