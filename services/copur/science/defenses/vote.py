"""The party-subset vote (``vote``): the only defense with a certificate against lying parties."""

from __future__ import annotations

import torch

from copur.science.certify import ABSTAIN, certified_parties, subset_voters, tally, vote_predict
from copur.science.defenses.base import Defense, DefenseOutput, register
from copur.science.purify.blocks import subset_masks

__all__ = ["VoteDefense"]


@register("vote", rank=7)
class VoteDefense(Defense):
    """Party-subset vote: the purifier + head on every subset S of k parties (the rest missing)
    votes; certified against t compromised parties when the lead exceeds twice the voters they
    can touch."""

    name = "vote"

    def _members(self, observed: torch.Tensor) -> tuple[torch.Tensor, int]:
        m, k = observed.shape[1], min(self.engine.config.vote_k, observed.shape[1])
        subset_voters(m, k)  # refuses a k out of 1..M with a ConfigError
        return subset_masks(m, (k,), observed.device), k

    def _voter_logits(
        self, h: torch.Tensor, member: torch.Tensor, differentiable: bool
    ) -> torch.Tensor:
        """(B, V, C): voter S's head logits on the purifier's output from the parties in S only."""
        b, (v, m) = len(h), member.shape
        sees = member.unsqueeze(0).expand(b, v, m).reshape(b * v, m)
        out = self.engine.voter_purifier().purify(
            h.repeat_interleave(v, dim=0), sees, differentiable=differentiable
        )
        return self.engine.models.head_ae(out.h).view(b, v, -1)

    def logits(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Surrogate: log of the mean softmax of the complete voters (a differentiable count of
        the votes)."""
        member, _ = self._members(observed)
        complete = (member.unsqueeze(0) <= observed.unsqueeze(1)).all(dim=2).to(h.dtype)
        probs = self._voter_logits(h, member, True).softmax(dim=2) * complete.unsqueeze(2)
        return (
            (probs.sum(dim=1) / complete.sum(dim=1, keepdim=True).clamp_min(1))
            .clamp_min(1e-12)
            .log()
        )

    @torch.no_grad()
    def predict(
        self, h: torch.Tensor, observed: torch.Tensor, *, certify: bool = False
    ) -> DefenseOutput:
        """The vote's winner (abstain on a tie rule) and, when ``certify``, the most lying
        parties it is certified against."""
        eng = self.engine
        member, k = self._members(observed)
        m, v = observed.shape[1], len(member)
        # Every voter of every sample in one batch: voter S sees only the parties in S.
        votes = self._voter_logits(h, member, False).argmax(dim=2)
        complete = (member.unsqueeze(0) <= observed.unsqueeze(1)).all(dim=2)
        votes = torch.where(complete, votes, torch.full_like(votes, ABSTAIN))
        counts = tally(votes, eng.manifest_classes)
        certificate = (
            {"certified_parties": certified_parties(counts, num_parties=m, k=k)} if certify else {}
        )
        probs = counts.to(h.dtype) / v
        return DefenseOutput(
            probs=probs,
            labels=vote_predict(counts),
            scores=torch.zeros(observed.shape, device=h.device),
            flagged=torch.zeros_like(observed),
            certificate=certificate,
        )
