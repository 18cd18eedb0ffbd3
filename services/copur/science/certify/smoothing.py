"""Randomized smoothing (Cohen, Rosenfeld and Kolter, ICML 2019): PREDICT and CERTIFY, batched
over samples.

The smoothed classifier is g(x) = argmax_c P(f(x + eps) = c) with eps ~ N(0, sigma^2 I). Every
forward pass of the base classifier f goes through ``classify`` in chunks of at most
``batch_size`` rows that mix the noise draws of several samples, never one sample at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import torch

from copur.errors import ConfigError
from copur.science.certify.stats import binom_test_half, clopper_pearson_lower

__all__ = ["ABSTAIN", "SmoothingConfig", "sample_counts", "smoothed_certify", "smoothed_predict"]

ABSTAIN = -1

Classifier = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class SmoothingConfig:
    """Noise level ``sigma``; ``n0`` selection draws and ``n`` estimation draws per sample; failure
    probability ``alpha``; ``batch_size`` noisy rows per call of the base classifier."""

    sigma: float = 0.5
    n0: int = 100
    n: int = 1000
    alpha: float = 0.001
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ConfigError(f"smoothing.sigma must be > 0, got {self.sigma}")
        for name in ("n0", "n", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"smoothing.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"smoothing.alpha must be in (0, 1), got {self.alpha}")


def sample_counts(
    classify: Classifier,
    x: torch.Tensor,
    *,
    num: int,
    sigma: float,
    num_classes: int,
    generator: torch.Generator,
    batch_size: int,
) -> torch.Tensor:
    """Counts (B, num_classes) int64 of ``classify(x_b + N(0, sigma^2 I))`` over ``num`` draws
    per sample.

    ``x`` is (B, D); ``classify`` maps (N, D) to (N,) int64 labels in [0, num_classes) and is
    called under ``torch.no_grad()`` on chunks of at most ``batch_size`` rows of the flattened
    (sample, draw) order. Noise is drawn on ``x``'s device and dtype from ``generator``, whose
    device must therefore be ``x``'s device (a CPU generator for CPU tensors, a CUDA generator
    for CUDA tensors). The result is a function of (x, generator state, num, sigma, batch_size):
    the same seed reproduces it exactly. Every row sums to ``num``."""
    if x.dim() != 2:
        raise ValueError(f"x must be (B, D), got shape {tuple(x.shape)}")
    if num < 1 or batch_size < 1 or num_classes < 1:
        raise ValueError(
            f"num, batch_size and num_classes must be >= 1, got {num}, {batch_size}, {num_classes}"
        )
    if generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device} but x is on {x.device}")
    num_samples, dim = x.shape
    flat_counts = torch.zeros(num_samples * num_classes, dtype=torch.int64, device=x.device)
    total = num_samples * num
    with torch.no_grad():
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            # Step 1: rows start..stop of the flattened (sample, draw) grid belong to sample row //
            # num.
            owner = torch.arange(start, stop, device=x.device) // num
            # Step 2: perturb each owner's features with fresh Gaussian noise of scale sigma.
            noise = torch.randn(
                (stop - start, dim), generator=generator, device=x.device, dtype=x.dtype
            )
            labels = classify(x.index_select(0, owner) + sigma * noise)
            if labels.shape != (stop - start,):
                raise ValueError(
                    f"classify must return shape ({stop - start},), got {tuple(labels.shape)}"
                )
            labels = labels.to(device=x.device, dtype=torch.int64)
            if bool(((labels < 0) | (labels >= num_classes)).any()):
                raise ValueError(f"classify returned a label outside 0..{num_classes - 1}")
            # Step 3: add one vote to cell (owner, label) of the flattened count table.
            flat_counts += torch.bincount(
                owner * num_classes + labels, minlength=num_samples * num_classes
            )
    return flat_counts.view(num_samples, num_classes)


def _top_two(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top class (lowest index on ties), its count, and the largest count among the other
    classes."""
    top = counts.argmax(dim=1)
    n_top = counts.gather(1, top[:, None])[:, 0]
    others = counts.scatter(1, top[:, None], -1)
    n_second = others.max(dim=1).values.clamp(min=0)
    return top, n_top, n_second


def smoothed_predict(
    classify: Classifier,
    x: torch.Tensor,
    *,
    config: SmoothingConfig,
    num_classes: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Cohen et al.'s PREDICT: (B,) int64 labels on ``x``'s device, ``ABSTAIN`` where not
    significant.

    Guarantee: for each sample, the probability of returning a class other than the smoothed
    classifier's g(x) is at most ``config.alpha`` (over the noise draws); otherwise it returns
    g(x) or abstains."""
    # Step 1: n noisy draws per sample give the counts.
    counts = sample_counts(
        classify,
        x,
        num=config.n,
        sigma=config.sigma,
        num_classes=num_classes,
        generator=generator,
        batch_size=config.batch_size,
    )
    # Step 2: the top two counts nA (class cA) and nB.
    top, n_top, n_second = _top_two(counts)
    # Step 3: keep cA only where the exact binomial test of nA vs nB against 1/2 rejects at level
    # alpha.
    significant = [
        binom_test_half(a, a + b) <= config.alpha
        for a, b in zip(n_top.tolist(), n_second.tolist(), strict=True)
    ]
    keep = torch.tensor(significant, dtype=torch.bool, device=x.device)
    return torch.where(keep, top, torch.full_like(top, ABSTAIN))


def smoothed_certify(
    classify: Classifier,
    x: torch.Tensor,
    *,
    config: SmoothingConfig,
    num_classes: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cohen et al.'s CERTIFY: labels (B,) int64 and L2 radii (B,) float32, both on ``x``'s
    device.

    Guarantee: with probability at least 1 - ``config.alpha`` over the noise draws, for each
    sample that does not abstain the smoothed classifier g returns the label at every x' with
    ||x' - x||_2 < radius. Abstentions are ``(ABSTAIN, 0.0)``."""
    sigma, n, alpha = config.sigma, config.n, config.alpha

    def counts(num: int) -> torch.Tensor:
        return sample_counts(
            classify,
            x,
            num=num,
            sigma=sigma,
            num_classes=num_classes,
            generator=generator,
            batch_size=config.batch_size,
        )

    # Step 1: n0 selection draws pick the candidate class cA (lowest index on ties).
    selected = counts(config.n0).argmax(dim=1)
    # Step 2: n fresh estimation draws count how often cA comes out.
    n_a = counts(n).gather(1, selected[:, None])[:, 0]
    labels: list[int] = []
    radii: list[float] = []
    normal = NormalDist()
    for label, count in zip(selected.tolist(), n_a.tolist(), strict=True):
        # Step 3: one-sided Clopper-Pearson lower bound pA on P(f(x + eps) = cA).
        p_a = clopper_pearson_lower(count, n, alpha)
        # Step 4: certify radius sigma * Phi^-1(pA) when pA > 1/2, else abstain.
        if p_a > 0.5:
            labels.append(label)
            radii.append(sigma * normal.inv_cdf(p_a))
        else:
            labels.append(ABSTAIN)
            radii.append(0.0)
    return (
        torch.tensor(labels, dtype=torch.int64, device=x.device),
        torch.tensor(radii, dtype=torch.float32, device=x.device),
    )
