"""Plausible lies: the attackers send the blocks of another real sample (``mimic``), aimed at the
defense's runner-up class (``sia``).

A compromised party can produce such blocks for real: it runs its own extractor on another
sample's features. Colluding attackers use one and the same donor, so their lies agree with each
other."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from copur.errors import ConfigError
from copur.science.attacks.base import Attack, AttackContext
from copur.science.attacks.search import FACTORS, blend, nearest_donors, pick_best, random_donors

__all__ = ["SIA", "Mimic", "margin"]


def margin(logits: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """Per row, the logit of ``cls`` minus the best other logit (the Carlini-Wagner margin; > 0:
    ``cls`` wins)."""
    own = logits.gather(1, cls.unsqueeze(1)).squeeze(1)
    others = (
        logits.masked_fill(F.one_hot(cls, logits.shape[1]).bool(), -torch.inf).max(dim=1).values
    )
    return own - others


def _pool(ctx: AttackContext, name: str) -> torch.Tensor:
    if ctx.pool is None or len(ctx.pool) == 0:
        raise ValueError(f"{name} needs donor samples (the context has no pool)")
    return ctx.pool


def _factors(factor: float, n: int, device: torch.device) -> torch.Tensor:
    """The factor of each of n candidates: the attack's own, then cycling through :data:`FACTORS`
    x it."""
    return torch.tensor([factor * FACTORS[j % len(FACTORS)] for j in range(n)], device=device)


@dataclass
class Mimic(Attack):
    """The attackers' blocks become those of a donor sample of another class, moved ``factor`` of
    the way from their honest blocks (1: the donor's blocks exactly). The donor: pool row
    ``donor`` when given, else a pool row of class ``donor_class``, else one of any class but the
    sample's own; ``nearest`` ranks donors by how well their blocks match the honest parties'
    (white-box) instead of drawing them at random. ``search`` = N > 0 makes it query-based: N
    candidates (donors, factors) per sample, and the one the defense answers worst is sent (the
    worst case of an attacker that sees the answers)."""

    factor: float = 1.0
    search: int = 0
    nearest: bool = False
    donor: int | None = None
    donor_class: int | None = None
    name = "mimic"

    def __post_init__(self) -> None:
        if not self.factor > 0 or self.search < 0:
            raise ConfigError(
                f"attack 'mimic': factor must be > 0 and search >= 0, got {self.factor}, "
                f"{self.search}"
            )

    def corrupt(
        self,
        h: torch.Tensor,
        observed: torch.Tensor,
        mask: torch.Tensor,
        attackers: list[int],
        ctx: AttackContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attackers' blocks replaced by (a blend towards) one donor sample's blocks, the
        same donor for every colluder."""
        pool = _pool(ctx, self.name).to(h.device)
        n = max(1, self.search)
        if self.donor is not None:
            if not 0 <= self.donor < len(pool):
                raise ValueError(f"donor {self.donor} is not a pool row (0..{len(pool) - 1})")
            donors = torch.full((len(h), n), self.donor, dtype=torch.long, device=h.device)
        else:
            allowed = torch.ones(len(h), len(pool), dtype=torch.bool, device=h.device)
            reference = None
            if ctx.pool_labels is not None:
                labels = ctx.pool_labels.to(h.device)
                if self.donor_class is not None:
                    allowed = (labels == self.donor_class).unsqueeze(0).expand(len(h), -1)
                elif ctx.labels is not None or ctx.query is not None:
                    reference = ctx.reference(h, observed)
                    allowed = labels.unsqueeze(0) != reference.unsqueeze(1)
            if self.nearest:
                donors = nearest_donors(h, pool, allowed, attackers, ctx.num_parties, n)
            else:
                donors = random_donors(allowed, n, ctx.generator)
        candidates = blend(h, pool[donors], _factors(self.factor, n, h.device), mask)
        if self.search <= 0:
            return candidates[:, 0], observed
        return pick_best(ctx, candidates, observed, ctx.reference(h, observed)), observed


@dataclass
class SIA(Attack):
    """The runner-up attack: aim at the second class of the defended output on the honest input.
    Candidates are pool samples of that class (half the nearest to the honest blocks, half at
    random) at the factors of a search; the defense's answers pick the best; with ``steps`` > 0
    it is then pushed further towards the runner-up by gradient steps through ``ctx.model`` (a
    margin loss), keeping whichever the defense answers worse."""

    search: int = 16
    factor: float = 1.0
    steps: int = 0
    step_size: float = 0.5
    name = "sia"

    def __post_init__(self) -> None:
        if not self.factor > 0 or self.steps < 0 or not self.step_size > 0:
            raise ConfigError("attack 'sia': factor and step_size must be > 0 and steps >= 0")

    def corrupt(
        self,
        h: torch.Tensor,
        observed: torch.Tensor,
        mask: torch.Tensor,
        attackers: list[int],
        ctx: AttackContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attackers' blocks that push the defended answer to its runner-up class: the best
        donor, then gradient steps."""
        pool = _pool(ctx, self.name).to(h.device)
        if ctx.pool_labels is None:
            raise ValueError("sia needs the classes of the donor samples (pool_labels)")
        verdict = ctx.ask(h, observed)
        reference = ctx.labels if ctx.labels is not None else verdict.labels
        # The runner-up: the most probable class other than the reference.
        probs = verdict.probs.scatter(1, reference.unsqueeze(1), -1.0)
        runner_up = probs.argmax(dim=1)
        allowed = ctx.pool_labels.to(h.device).unsqueeze(0) == runner_up.unsqueeze(1)
        n = max(2, self.search)
        donors = torch.cat(
            [
                nearest_donors(h, pool, allowed, attackers, ctx.num_parties, n - n // 2),
                random_donors(allowed, n // 2, ctx.generator),
            ],
            dim=1,
        )
        candidates = blend(h, pool[donors], _factors(self.factor, n, h.device), mask)
        best = pick_best(ctx, candidates, observed, reference)
        if self.steps <= 0 or ctx.model is None:
            return best, observed
        pushed = _towards(
            best, observed, mask, ctx, runner_up, self.steps, self.step_size, ctx.num_parties
        )
        return pick_best(ctx, torch.stack([best, pushed], dim=1), observed, reference), observed


def _towards(
    x: torch.Tensor,
    observed: torch.Tensor,
    mask: torch.Tensor,
    ctx: AttackContext,
    target: torch.Tensor,
    steps: int,
    step_size: float,
    num_parties: int,
) -> torch.Tensor:
    """Gradient ascent of the margin of ``target`` through ``ctx.model``, l2-normalised steps per
    block."""
    assert ctx.model is not None
    fmask = mask.to(x.dtype)
    x = x.detach().clone()
    for _ in range(steps):
        x.requires_grad_(True)
        with torch.enable_grad():
            grad = torch.autograd.grad(margin(ctx.model(x, observed), target).sum(), x)[0] * fmask
        with torch.no_grad():
            g = grad.unflatten(1, (num_parties, -1))
            x = x + step_size * (g / g.norm(dim=2, keepdim=True).clamp_min(1e-12)).flatten(1)
    return x.detach()
