"""Randomized smoothing (``rs``) and smoothing over the purified features (``copur+rs``)."""

from __future__ import annotations

import torch

from copur.science.certify import ABSTAIN, binom_test_half, sample_counts, smoothed_certify
from copur.science.defenses.base import Defense, DefenseOutput, register
from copur.science.defenses.engine import Engine
from copur.science.models import FusionHead

__all__ = ["SmoothingDefense"]


class SmoothingDefense(Defense):
    """Randomized smoothing of a head over (optionally purified) features: PREDICT, or CERTIFY
    (l2 radius)."""

    def __init__(self, engine: Engine, *, purifier: str | None) -> None:
        super().__init__(engine)
        self.purifier_name = purifier
        self.name = "rs" if purifier is None else f"{purifier}+rs"
        self.head: FusionHead = (
            engine.models.head_vfl if purifier is None else engine.models.head_ae
        )

    def logits(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Surrogate (EOT): log of the mean softmax of the head over ``eot_samples`` Gaussian
        draws."""
        eng, sigma = self.engine, self.engine.config.smoothing.sigma
        x = eng.mask(h, observed)
        if self.purifier_name is not None:
            x = eng.purifier(self.purifier_name).purify(h, observed, differentiable=True).h
        n = eng.config.eot_samples
        noise = torch.randn((n, *x.shape), generator=eng.generator, device=x.device, dtype=x.dtype)
        probs = self.head(x.unsqueeze(0) + sigma * noise).softmax(dim=2).mean(dim=0)
        return probs.clamp_min(1e-12).log()

    @torch.no_grad()
    def predict(
        self, h: torch.Tensor, observed: torch.Tensor, *, certify: bool = False
    ) -> DefenseOutput:
        """Smoothed PREDICT (abstain unless the top class beats the runner-up at level alpha);
        CERTIFY's label and l2 radius when ``certify``."""
        eng, cfg = self.engine, self.engine.config.smoothing
        scores, flagged = torch.zeros(observed.shape, device=h.device), torch.zeros_like(observed)
        x = eng.mask(h, observed)
        if self.purifier_name is not None:
            p = eng.purifier(self.purifier_name).purify(h, observed)
            x, scores, flagged = p.h, p.scores, p.flagged
        classes = eng.manifest_classes
        counts = sample_counts(
            lambda v: self.head(v).argmax(dim=1),
            x,
            num=eng.config.predict_samples,
            sigma=cfg.sigma,
            num_classes=classes,
            generator=eng.generator,
            batch_size=cfg.batch_size,
        )
        # PREDICT: the top class unless a binomial test cannot tell it from the runner-up at level
        # alpha.
        top2 = counts.topk(2, dim=1)
        pvals = [binom_test_half(int(a), int(a + b)) for a, b in top2.values.tolist()]
        sure = torch.tensor(pvals, device=h.device) <= cfg.alpha
        labels = torch.where(sure, top2.indices[:, 0], torch.full_like(top2.indices[:, 0], ABSTAIN))
        certificate = {}
        if certify:
            cert_labels, radius = smoothed_certify(
                lambda v: self.head(v).argmax(dim=1),
                x,
                config=cfg,
                num_classes=classes,
                generator=eng.generator,
            )
            certificate = {"label": cert_labels, "radius": radius}
        probs = counts.to(h.dtype) / eng.config.predict_samples
        return DefenseOutput(
            probs=probs, labels=labels, scores=scores, flagged=flagged, certificate=certificate
        )


register("rs", rank=2)(lambda engine: SmoothingDefense(engine, purifier=None))
register("copur+rs", rank=6)(lambda engine: SmoothingDefense(engine, purifier="copur"))
