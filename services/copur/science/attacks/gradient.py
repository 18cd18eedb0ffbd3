"""Gradient attacks on the attackers' blocks: PGD against the head, and adaptive PGD through a
defense."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from copur.errors import ConfigError
from copur.science.attacks.base import Attack, AttackContext, Model
from copur.science.attacks.mimic import margin
from copur.science.attacks.search import random_donors

__all__ = ["LMA", "PGD", "Adaptive", "Evade", "pgd"]


def pgd(
    h: torch.Tensor,
    observed: torch.Tensor,
    mask: torch.Tensor,
    model: Model,
    *,
    labels: torch.Tensor | None,
    target: torch.Tensor | None,
    steps: int,
    step_size: float,
    eps: float | None,
) -> torch.Tensor:
    """Projected gradient descent on the masked coordinates of ``h`` only.

    Targeted (``target`` given): minimise CE(model(h), target); else maximise CE(model(h),
    labels). Unbounded (``eps`` None): signed-gradient steps of ``step_size``. l2-bounded:
    normalised-gradient steps of ``step_size`` per block, each attacker block projected back into
    the l2 ball of radius ``eps`` around its start."""
    if (target is None) == (labels is None):
        raise ValueError("pgd needs exactly one of labels (untargeted) or target (targeted)")
    start, fmask = h.detach(), mask.to(h.dtype)
    x = start.clone()
    num_parties = observed.shape[1]
    for _ in range(steps):
        x.requires_grad_(True)
        with torch.enable_grad():
            logits = model(x, observed)
            if target is not None:
                loss = -F.cross_entropy(logits, target)
            else:
                assert labels is not None
                loss = F.cross_entropy(logits, labels)
            grad = torch.autograd.grad(loss, x)[0] * fmask
        with torch.no_grad():
            if eps is None:
                x = x + step_size * grad.sign()
            else:
                g = grad.unflatten(1, (num_parties, -1))
                x = x + step_size * (g / g.norm(dim=2, keepdim=True).clamp_min(1e-12)).flatten(1)
                delta = (x - start).unflatten(1, (num_parties, -1))
                scale = (eps / delta.norm(dim=2, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
                x = start + (delta * scale).flatten(1)
            x = torch.where(mask, x, start)
    return x.detach()


@dataclass
class PGD(Attack):
    """PGD against the undefended head (``ctx.model``): reference 50 steps of 0.1, unbounded."""

    targeted: bool = False
    steps: int = 50
    step_size: float = 0.1
    eps: float | None = None
    name = "pgd"

    def corrupt(
        self,
        h: torch.Tensor,
        observed: torch.Tensor,
        mask: torch.Tensor,
        attackers: list[int],
        ctx: AttackContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attackers' blocks after ``steps`` signed-gradient steps on the head's (or the
        defense's) loss; the others untouched."""
        if ctx.model is None:
            raise ValueError(f"{self.name} needs a model to differentiate")
        target = ctx.target if self.targeted else None
        labels = None if self.targeted else ctx.labels
        if (target if self.targeted else labels) is None:
            raise ValueError(
                f"{self.name} ({'targeted' if self.targeted else 'untargeted'}) needs "
                f"{'target' if self.targeted else 'labels'} in the context"
            )
        x = pgd(
            h,
            observed,
            mask,
            ctx.model,
            labels=labels,
            target=target,
            steps=self.steps,
            step_size=self.step_size,
            eps=self.eps,
        )
        return x, observed


@dataclass
class Adaptive(PGD):
    """PGD through the defense itself (``ctx.model`` = the unrolled purifier + head), with the
    reference PGD budget: the honest test of a purification defense."""

    name = "adaptive"


def _check_positive(attack: str, **values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise ConfigError(f"attack '{attack}': parameter '{key}' must be > 0, got {value}")


def _l2_step(
    x: torch.Tensor, grad: torch.Tensor, step_size: float, num_parties: int
) -> torch.Tensor:
    """x + step_size times the gradient normalised to unit l2 norm in every block."""
    g = grad.unflatten(1, (num_parties, -1))
    return x + step_size * (g / g.norm(dim=2, keepdim=True).clamp_min(1e-12)).flatten(1)


def _margin_grad(
    model: Model, x: torch.Tensor, observed: torch.Tensor, reference: torch.Tensor
) -> torch.Tensor:
    """The gradient of sum over rows of (best other logit - logit of ``reference``): ascending it is
    untargeted loss maximisation with the Carlini-Wagner margin."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = -margin(model(x, observed), reference).sum()
        return torch.autograd.grad(loss, x)[0]


class _Best:
    """Per sample, the iterate the defense answered worst so far (a wrong answer, then the lowest
    probability of the reference class), judged by the defense's real answers, not by the
    differentiated surrogate."""

    def __init__(self, x: torch.Tensor, key: torch.Tensor) -> None:
        self.x, self.key = x.clone(), key.clone()

    def offer(self, x: torch.Tensor, key: torch.Tensor, ok: torch.Tensor | None = None) -> None:
        better = key < self.key if ok is None else (key < self.key) & ok
        self.x[better], self.key[better] = x[better], key[better]

    def offer_rows(self, rows: torch.Tensor, x: torch.Tensor, key: torch.Tensor) -> None:
        """Offer iterates for the given rows only."""
        better = key < self.key[rows]
        self.x[rows[better]], self.key[rows[better]] = x[better], key[better]


def _key(
    ctx: AttackContext, x: torch.Tensor, observed: torch.Tensor, reference: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The defense's verdict on ``x`` as a search key (lower is worse for the defense) and its
    flags."""
    verdict = ctx.ask(x, observed)
    p_ref = verdict.probs.gather(1, reference.unsqueeze(1)).squeeze(1)
    return p_ref - 2.0 * (verdict.labels != reference).to(p_ref.dtype), verdict.flagged


@dataclass
class LMA(Attack):
    """Loss maximisation: untargeted PGD on the Carlini-Wagner margin (best other logit minus the
    true one) through ``ctx.model`` (the defense itself, unrolled), signed steps when unbounded,
    l2 steps per block projected into the ``eps`` ball around the honest block otherwise. With
    query access the defense's real answer is checked every ``check_every`` steps and the worst
    iterate for the defense is sent. ``from_donor`` starts from the blocks of a random pool
    sample of another class instead of the honest ones."""

    steps: int = 50
    step_size: float = 0.5
    eps: float | None = None
    check_every: int = 5
    from_donor: bool = False
    name = "lma"

    def __post_init__(self) -> None:
        _check_positive(
            self.name, steps=self.steps, step_size=self.step_size, check_every=self.check_every
        )

    def corrupt(
        self,
        h: torch.Tensor,
        observed: torch.Tensor,
        mask: torch.Tensor,
        attackers: list[int],
        ctx: AttackContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attackers' blocks that maximise the Carlini-Wagner margin of the wrong class
        through the defense."""
        if ctx.model is None:
            raise ValueError(f"{self.name} needs a model to differentiate")
        reference = ctx.reference(h, observed)
        start = h.detach()
        x = start.clone()
        if self.from_donor and ctx.pool is not None:
            allowed = torch.ones(len(h), len(ctx.pool), dtype=torch.bool, device=h.device)
            if ctx.pool_labels is not None:
                allowed = ctx.pool_labels.to(h.device).unsqueeze(0) != reference.unsqueeze(1)
            donors = random_donors(allowed, 1, ctx.generator)[:, 0]
            x = torch.where(mask, ctx.pool.to(h.device)[donors], x)
        best = _Best(x, _key(ctx, x, observed, reference)[0]) if ctx.query is not None else None
        m = ctx.num_parties
        for step in range(1, self.steps + 1):
            grad = _margin_grad(ctx.model, x, observed, reference) * mask.to(x.dtype)
            with torch.no_grad():
                if self.eps is None:
                    x = x + self.step_size * grad.sign()
                else:
                    x = _l2_step(x, grad, self.step_size, m)
                    delta = (x - start).unflatten(1, (m, -1))
                    x = start + (
                        delta
                        * (self.eps / delta.norm(dim=2, keepdim=True).clamp_min(1e-12)).clamp(
                            max=1.0
                        )
                    ).flatten(1)
                x = torch.where(mask, x, start)
            if best is not None and (step % self.check_every == 0 or step == self.steps):
                best.offer(x, _key(ctx, x, observed, reference)[0])
        return (best.x if best is not None else x), observed


@dataclass
class Evade(Attack):
    """Detector-aware PGD: the margin loss through ``ctx.model`` (the defense unrolled; its
    discrete choices straight-through), l2 steps of ``step_size`` per block, every step
    checked against the defense's real flags: a step that gets an attacker flagged is halved
    up to ``backtrack`` times, then refused. The sent blocks are the iterate the defense
    answers worst among those it did not flag, so the detector never fires on a lie (only an
    honest block the defense already flags can be sent flagged)."""

    steps: int = 50
    step_size: float = 0.5
    backtrack: int = 3
    name = "evade"

    def __post_init__(self) -> None:
        _check_positive(
            self.name, steps=self.steps, step_size=self.step_size, backtrack=self.backtrack + 1
        )

    def corrupt(
        self,
        h: torch.Tensor,
        observed: torch.Tensor,
        mask: torch.Tensor,
        attackers: list[int],
        ctx: AttackContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """PGD on the attackers' blocks in which every step that would get a lying block flagged is
        halved or refused."""
        if ctx.model is None or ctx.query is None:
            raise ValueError(
                f"{self.name} needs a model to differentiate and query access to the defense's "
                "flags"
            )
        reference = ctx.reference(h, observed)
        x = h.detach().clone()
        key, _ = _key(ctx, x, observed, reference)
        best = _Best(x, key)
        fmask = mask.to(x.dtype)
        for _ in range(self.steps):
            grad = _margin_grad(ctx.model, x, observed, reference) * fmask
            with torch.no_grad():
                delta = _l2_step(x, grad, self.step_size, ctx.num_parties) - x
                pending = torch.ones(len(x), dtype=torch.bool, device=x.device)
                for _ in range(self.backtrack + 1):
                    rows = pending.nonzero().squeeze(1)
                    if len(rows) == 0:
                        break
                    proposal = x[rows] + delta[rows]
                    key, flagged = _key(ctx, proposal, observed[rows], reference[rows])
                    clean = ~flagged[:, attackers].any(dim=1)
                    accepted = rows[clean]
                    x[accepted] = proposal[clean]
                    best.offer_rows(accepted, proposal[clean], key[clean])
                    pending[accepted] = False
                    delta[rows] = delta[rows] / 2
        return best.x, observed
