"""The Attack interface. An attack rewrites only the attackers' blocks of h (or drops them).

May import: ``copur.errors`` and its own modules (the science: no transport, no I/O, no defense
code; the defense under test reaches an attack only as the callables of its
:class:`AttackContext`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["Attack", "AttackContext", "Model", "Query", "Verdict", "attacker_mask", "set_blocks"]

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(h, observed) -> logits, differentiable with respect to h."""


@dataclass(frozen=True)
class Verdict:
    """The defense's answer to a batch, as a querying attacker sees it: ``labels`` (B,),
    ``probs`` (B, C) and the parties it ``flagged`` (B, M)."""

    labels: torch.Tensor
    probs: torch.Tensor
    flagged: torch.Tensor


Query = Callable[[torch.Tensor, torch.Tensor], Verdict]
"""(h, observed) -> the defense's :class:`Verdict` (query access: answers, no gradients)."""


@dataclass(frozen=True, kw_only=True)
class AttackContext:
    """What an attacker may use. ``labels``: true classes (untargeted attacks; attacks that need
    a reference class and get none use the defense's own clean answer); ``target``: the class
    per sample a targeted attack pushes to; ``model``: the function gradient attacks
    differentiate (the defense's logits, exact or a surrogate); ``query``: the defense under
    test as a black box (answers and flags); ``pool``: clean embeddings of other samples
    (donors for mimicry) and ``pool_labels`` their classes; ``query_batch``: most rows per
    query call."""

    num_parties: int
    generator: torch.Generator
    labels: torch.Tensor | None = None
    target: torch.Tensor | None = None
    model: Model | None = None
    query: Query | None = None
    pool: torch.Tensor | None = None
    pool_labels: torch.Tensor | None = None
    query_batch: int = 8192

    def ask(self, h: torch.Tensor, observed: torch.Tensor) -> Verdict:
        """``query`` over ``h`` in chunks of ``query_batch`` rows (a ValueError when there is no
        query access)."""
        if self.query is None:
            raise ValueError(
                "this attack needs query access to the defense (the context has no query)"
            )
        parts = [
            self.query(h[i : i + self.query_batch], observed[i : i + self.query_batch])
            for i in range(0, len(h), self.query_batch)
        ]
        return Verdict(
            labels=torch.cat([p.labels for p in parts]),
            probs=torch.cat([p.probs for p in parts]),
            flagged=torch.cat([p.flagged for p in parts]),
        )

    def reference(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The class an untargeted attack moves away from: the true label, else the defense's
        clean answer."""
        return self.labels if self.labels is not None else self.ask(h, observed).labels


def attacker_mask(
    num_parties: int, attackers: Sequence[int], emb_dim: int, device: torch.device
) -> torch.Tensor:
    """(M*e,) bool: True on the coordinates of the attackers' blocks."""
    party = torch.zeros(num_parties, dtype=torch.bool, device=device)
    party[list(attackers)] = True
    return party.repeat_interleave(emb_dim)


def set_blocks(h: torch.Tensor, new: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """h with the masked coordinates taken from ``new``."""
    return torch.where(mask, new, h)


class Attack(ABC):
    """Corrupts the blocks of the parties in ``attackers``; every other block is returned
    unchanged."""

    name: str = ""

    def __call__(
        self, h: torch.Tensor, observed: torch.Tensor, attackers: Sequence[int], ctx: AttackContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the corrupted (h, observed)."""
        if not attackers:
            return h, observed
        bad = [a for a in attackers if not 0 <= a < ctx.num_parties]
        if bad:
            raise ValueError(f"attacker index {bad[0]} is not a party (0..{ctx.num_parties - 1})")
        mask = attacker_mask(ctx.num_parties, attackers, h.shape[1] // ctx.num_parties, h.device)
        return self.corrupt(h, observed, mask, list(attackers), ctx)

    @abstractmethod
    def corrupt(
        self,
        h: torch.Tensor,
        observed: torch.Tensor,
        mask: torch.Tensor,
        attackers: list[int],
        ctx: AttackContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attack proper; ``mask`` marks the attackers' coordinates."""
