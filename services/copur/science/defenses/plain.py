"""No defense (``none``) and plain projection onto the autoencoder's manifold (``ae``)."""

from __future__ import annotations

import torch

from copur.science.defenses.base import Defense, DefenseOutput, register
from copur.science.purify.blocks import block_norms

__all__ = ["AEDefense", "NoDefense"]


@register("none", rank=0)
class NoDefense(Defense):
    """The stage-1 head on the received embedding (unobserved blocks zero)."""

    name, differentiable = "none", True

    def logits(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The stage-1 head's logits on the masked embedding (exact, differentiable)."""
        return self.engine.models.head_vfl(self.engine.mask(h, observed))

    @torch.no_grad()
    def predict(
        self, h: torch.Tensor, observed: torch.Tensor, *, certify: bool = False
    ) -> DefenseOutput:
        """The stage-1 head's answer; no scores, no flags."""
        return self._plain(self.logits(h, observed), observed)


@register("ae", rank=1)
class AEDefense(Defense):
    """Plain projection: the stage-3 head on D(E(h))."""

    name, differentiable = "ae", True

    def logits(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The stage-3 head's logits on D(E(masked h)) (exact, differentiable)."""
        return self.engine.models.head_ae(
            self.engine.models.autoencoder(self.engine.mask(h, observed))
        )

    @torch.no_grad()
    def predict(
        self, h: torch.Tensor, observed: torch.Tensor, *, certify: bool = False
    ) -> DefenseOutput:
        """The stage-3 head on the projection; each party's score is its block's projection
        residual."""
        eng = self.engine
        out = eng.models.autoencoder(eng.mask(h, observed))
        scores = block_norms(out - h, eng.num_parties) / eng.block_scale * observed
        return self._plain(eng.models.head_ae(out), observed, scores)
