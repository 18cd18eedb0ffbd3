"""Attacks that need no model: flip, noise, replace, zero, drop."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from copur.science.attacks.base import Attack, AttackContext, set_blocks

__all__ = ["Drop", "Flip", "Noise", "Replace", "Zero"]


@dataclass
class Flip(Attack):
    """Distributed feature flipping: h_a <- -amp * h_a."""

    amp: float = 10.0
    name = "flip"

    def corrupt(
        self,
        h: torch.Tensor,
        observed: torch.Tensor,
        mask: torch.Tensor,
        attackers: list[int],
        ctx: AttackContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attackers' blocks multiplied by ``-amplitude``."""
        return set_blocks(h, -self.amp * h, mask), observed


@dataclass
class Noise(Attack):
    """Replace each attacker block by Gaussian noise of l2 norm ``norm``."""

    norm: float = 10.0
    name = "noise"

    def corrupt(
        self,
        h: torch.Tensor,
        observed: torch.Tensor,
        mask: torch.Tensor,
        attackers: list[int],
        ctx: AttackContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attackers' blocks plus Gaussian noise of l2 norm ``norm`` per block."""
        noise = torch.randn(h.shape, generator=ctx.generator, dtype=h.dtype).to(h.device)
        blocks = noise.unflatten(1, (ctx.num_parties, -1))
        blocks = blocks / blocks.norm(dim=2, keepdim=True).clamp_min(1e-12) * self.norm
        return set_blocks(h, blocks.flatten(1), mask), observed


@dataclass
class Replace(Attack):
    """On-manifold mimicry: send another (random) sample's clean block instead of one's own."""

    name = "replace"

    def corrupt(
        self,
        h: torch.Tensor,
        observed: torch.Tensor,
        mask: torch.Tensor,
        attackers: list[int],
        ctx: AttackContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attackers' blocks of another sample of the pool (an on-manifold lie)."""
        pool = ctx.pool if ctx.pool is not None else h
        pick = torch.randint(len(pool), (len(h),), generator=ctx.generator).to(h.device)
        return set_blocks(h, pool[pick].to(h.device), mask), observed


@dataclass
class Zero(Attack):
    """Send an all-zero block."""

    name = "zero"

    def corrupt(
        self,
        h: torch.Tensor,
        observed: torch.Tensor,
        mask: torch.Tensor,
        attackers: list[int],
        ctx: AttackContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attackers' blocks set to zero."""
        return set_blocks(h, torch.zeros_like(h), mask), observed


@dataclass
class Drop(Attack):
    """Do not answer: the attackers' blocks are unobserved (their values are zeroed)."""

    name = "drop"

    def corrupt(
        self,
        h: torch.Tensor,
        observed: torch.Tensor,
        mask: torch.Tensor,
        attackers: list[int],
        ctx: AttackContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attackers send nothing: their blocks are marked unobserved."""
        observed = observed.clone()
        observed[:, attackers] = False
        return set_blocks(h, torch.zeros_like(h), mask), observed
