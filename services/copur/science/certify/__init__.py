"""Certification maths for robust collaborative inference: exact binomial tools, randomized
smoothing (Cohen et al. 2019) and the party-subset vote certificate. Pure functions: no I/O, no
printing."""

from copur.science.certify.smoothing import (
    ABSTAIN,
    SmoothingConfig,
    sample_counts,
    smoothed_certify,
    smoothed_predict,
)
from copur.science.certify.stats import binom_tail, binom_test_half, clopper_pearson_lower
from copur.science.certify.vote import (
    certified_accuracy,
    certified_parties,
    changeable_voters,
    subset_voters,
    tally,
    vote_predict,
)

__all__ = [
    "ABSTAIN",
    "SmoothingConfig",
    "binom_tail",
    "binom_test_half",
    "certified_accuracy",
    "certified_parties",
    "changeable_voters",
    "clopper_pearson_lower",
    "sample_counts",
    "smoothed_certify",
    "smoothed_predict",
    "subset_voters",
    "tally",
    "vote_predict",
]
