"""Purify, then classify: ``copur-ref``, ``copur-l21`` and ``copur`` (the default), one per
purifier."""

from __future__ import annotations

import torch

from copur.science.defenses.base import Defense, DefenseOutput, register
from copur.science.defenses.engine import Engine

__all__ = ["PurifyDefense"]


class PurifyDefense(Defense):
    """Purify (``copur``, ``copur-l21`` or ``copur-ref``), then the stage-3 head."""

    differentiable = True

    def __init__(self, engine: Engine, purifier: str) -> None:
        super().__init__(engine)
        self.name = purifier

    def logits(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The stage-3 head's logits on the purifier's unrolled, differentiable output."""
        return self.engine.models.head_ae(
            self.engine.purifier(self.name).purify(h, observed, differentiable=True).h
        )

    @torch.no_grad()
    def predict(
        self, h: torch.Tensor, observed: torch.Tensor, *, certify: bool = False
    ) -> DefenseOutput:
        """The stage-3 head on the purified embedding, with the purifier's scores and flags."""
        p = self.engine.purifier(self.name).purify(h, observed)
        return self._plain(self.engine.models.head_ae(p.h), observed, p.scores, p.flagged)


for _rank, _name in ((3, "copur-ref"), (4, "copur-l21"), (5, "copur")):
    register(_name, rank=_rank)(lambda engine, purifier=_name: PurifyDefense(engine, purifier))
