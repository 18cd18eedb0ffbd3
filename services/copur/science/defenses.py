"""Defenses by name behind one interface: ``none``, ``ae``, ``rs``, ``copur-ref``, ``copur-l21``, ``copur``,
``copur+rs``, ``vote``.

An :class:`Engine` owns a bundle's networks, its calibration, its consistency bank and a seeded generator on
one device, and builds each defense once. Every defense maps a batch (h, observed) to a
:class:`DefenseOutput`, and offers differentiable ``logits`` for gradient attacks: exact where the defense is
differentiable, a surrogate where it is not (expectation over the noise for smoothing, the voters' mean
probabilities for the vote), so that no defense is evaluated only against attacks that cannot see it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from copur.errors import BundleError, ConfigError
from copur.science.attacks.base import Verdict
from copur.science.bundle import Bundle
from copur.science.calibration import bundle_bank
from copur.science.certify import (
    ABSTAIN,
    SmoothingConfig,
    binom_test_half,
    certified_parties,
    sample_counts,
    smoothed_certify,
    subset_voters,
    tally,
    vote_predict,
)
from copur.science.models import FusionHead
from copur.science.purify import PURIFIERS, ConsensusConfig, Purifier, RobustConfig, make_purifier
from copur.science.purify.blocks import block_norms, expand_blocks
from copur_client.wire import DEFAULT_DEFENSE

__all__ = ["DEFAULT_DEFENSE", "DEFENSES", "Defense", "DefenseOutput", "Engine", "EngineConfig"]


@dataclass(frozen=True)
class DefenseOutput:
    """Per sample: probabilities (B, C), label (-1 = abstain), per-party scores and flags (B, M), and the
    certificate when asked (``radius`` for smoothing, ``certified_parties`` for the vote)."""

    probs: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor
    flagged: torch.Tensor
    certificate: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    predict_samples: int = 200
    vote_k: int = 2
    robust: RobustConfig = field(default_factory=RobustConfig)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    #: noise draws per gradient of a smoothing defense's surrogate logits (expectation over transformation)
    eot_samples: int = 16
    seed: int = 0


class Defense(ABC):
    """A defense: ``predict`` answers a batch; ``logits`` are what gradient attacks differentiate (exact when
    ``differentiable``, else a documented surrogate, or a ConfigError where there is none)."""

    name: str = ""
    differentiable: bool = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @abstractmethod
    def predict(self, h: torch.Tensor, observed: torch.Tensor, *, certify: bool = False) -> DefenseOutput:
        """Classify a batch; unobserved blocks are ignored."""

    def logits(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Differentiable logits (for gradient attacks); only where ``differentiable``."""
        raise ConfigError(f"defense '{self.name}' is not differentiable")

    def query(self, h: torch.Tensor, observed: torch.Tensor) -> Verdict:
        """The answer as a querying attacker sees it (an attack's ``query``: labels, probabilities, flags)."""
        out = self.predict(h, observed)
        return Verdict(labels=out.labels, probs=out.probs, flagged=out.flagged)

    def _plain(
        self,
        logits: torch.Tensor,
        observed: torch.Tensor,
        scores: torch.Tensor | None = None,
        flagged: torch.Tensor | None = None,
    ) -> DefenseOutput:
        zeros = torch.zeros(observed.shape, device=logits.device)
        return DefenseOutput(
            probs=logits.softmax(dim=1),
            labels=logits.argmax(dim=1),
            scores=zeros if scores is None else scores,
            flagged=torch.zeros_like(observed) if flagged is None else flagged,
        )


class NoDefense(Defense):
    """The stage-1 head on the received embedding (unobserved blocks zero)."""

    name, differentiable = "none", True

    def logits(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        return self.engine.models.head_vfl(self.engine.mask(h, observed))

    @torch.no_grad()
    def predict(self, h: torch.Tensor, observed: torch.Tensor, *, certify: bool = False) -> DefenseOutput:
        return self._plain(self.logits(h, observed), observed)


class AEDefense(Defense):
    """Plain projection: the stage-3 head on D(E(h))."""

    name, differentiable = "ae", True

    def logits(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        return self.engine.models.head_ae(self.engine.models.autoencoder(self.engine.mask(h, observed)))

    @torch.no_grad()
    def predict(self, h: torch.Tensor, observed: torch.Tensor, *, certify: bool = False) -> DefenseOutput:
        eng = self.engine
        out = eng.models.autoencoder(eng.mask(h, observed))
        scores = block_norms(out - h, eng.num_parties) / eng.block_scale * observed
        return self._plain(eng.models.head_ae(out), observed, scores)


class PurifyDefense(Defense):
    """Purify (``copur``, ``copur-l21`` or ``copur-ref``), then the stage-3 head."""

    differentiable = True

    def __init__(self, engine: Engine, purifier: str) -> None:
        super().__init__(engine)
        self.name = purifier

    def logits(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        return self.engine.models.head_ae(self.engine.purifier(self.name).purify(h, observed, differentiable=True).h)

    @torch.no_grad()
    def predict(self, h: torch.Tensor, observed: torch.Tensor, *, certify: bool = False) -> DefenseOutput:
        p = self.engine.purifier(self.name).purify(h, observed)
        return self._plain(self.engine.models.head_ae(p.h), observed, p.scores, p.flagged)


class SmoothingDefense(Defense):
    """Randomized smoothing of a head over (optionally purified) features: PREDICT, or CERTIFY (l2 radius)."""

    def __init__(self, engine: Engine, *, purifier: str | None) -> None:
        super().__init__(engine)
        self.purifier_name = purifier
        self.name = "rs" if purifier is None else f"{purifier}+rs"
        self.head: FusionHead = engine.models.head_vfl if purifier is None else engine.models.head_ae

    def logits(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Surrogate (EOT): log of the mean softmax of the head over ``eot_samples`` Gaussian draws."""
        eng, sigma = self.engine, self.engine.config.smoothing.sigma
        x = eng.mask(h, observed)
        if self.purifier_name is not None:
            x = eng.purifier(self.purifier_name).purify(h, observed, differentiable=True).h
        n = eng.config.eot_samples
        noise = torch.randn((n, *x.shape), generator=eng.generator, device=x.device, dtype=x.dtype)
        probs = self.head(x.unsqueeze(0) + sigma * noise).softmax(dim=2).mean(dim=0)
        return probs.clamp_min(1e-12).log()

    @torch.no_grad()
    def predict(self, h: torch.Tensor, observed: torch.Tensor, *, certify: bool = False) -> DefenseOutput:
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
        # PREDICT: the top class unless a binomial test cannot tell it from the runner-up at level alpha.
        top2 = counts.topk(2, dim=1)
        pvals = [binom_test_half(int(a), int(a + b)) for a, b in top2.values.tolist()]
        sure = torch.tensor(pvals, device=h.device) <= cfg.alpha
        labels = torch.where(sure, top2.indices[:, 0], torch.full_like(top2.indices[:, 0], ABSTAIN))
        certificate = {}
        if certify:
            cert_labels, radius = smoothed_certify(
                lambda v: self.head(v).argmax(dim=1), x, config=cfg, num_classes=classes, generator=eng.generator
            )
            certificate = {"label": cert_labels, "radius": radius}
        probs = counts.to(h.dtype) / eng.config.predict_samples
        return DefenseOutput(probs=probs, labels=labels, scores=scores, flagged=flagged, certificate=certificate)


class VoteDefense(Defense):
    """Party-subset vote: the purifier + head on every subset S of k parties (the rest missing) votes;
    certified against t compromised parties when the lead exceeds twice the voters they can touch."""

    name = "vote"

    def _members(self, observed: torch.Tensor) -> tuple[torch.Tensor, int]:
        m, k = observed.shape[1], min(self.engine.config.vote_k, observed.shape[1])
        subsets = subset_voters(m, k)
        member = torch.zeros(len(subsets), m, dtype=torch.bool, device=observed.device)
        for row, s in enumerate(subsets):
            member[row, list(s)] = True
        return member, k

    def _voter_logits(self, h: torch.Tensor, member: torch.Tensor, differentiable: bool) -> torch.Tensor:
        """(B, V, C): voter S's head logits on the purifier's output from the parties in S only."""
        b, (v, m) = len(h), member.shape
        sees = member.unsqueeze(0).expand(b, v, m).reshape(b * v, m)
        out = self.engine.voter_purifier().purify(h.repeat_interleave(v, dim=0), sees, differentiable=differentiable)
        return self.engine.models.head_ae(out.h).view(b, v, -1)

    def logits(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Surrogate: log of the mean softmax of the complete voters (a differentiable count of the votes)."""
        member, _ = self._members(observed)
        complete = (member.unsqueeze(0) <= observed.unsqueeze(1)).all(dim=2).to(h.dtype)
        probs = self._voter_logits(h, member, True).softmax(dim=2) * complete.unsqueeze(2)
        return (probs.sum(dim=1) / complete.sum(dim=1, keepdim=True).clamp_min(1)).clamp_min(1e-12).log()

    @torch.no_grad()
    def predict(self, h: torch.Tensor, observed: torch.Tensor, *, certify: bool = False) -> DefenseOutput:
        eng = self.engine
        member, k = self._members(observed)
        m, v = observed.shape[1], len(member)
        # Every voter of every sample in one batch: voter S sees only the parties in S.
        votes = self._voter_logits(h, member, False).argmax(dim=2)
        complete = (member.unsqueeze(0) <= observed.unsqueeze(1)).all(dim=2)
        votes = torch.where(complete, votes, torch.full_like(votes, ABSTAIN))
        counts = tally(votes, eng.manifest_classes)
        certificate = {"certified_parties": certified_parties(counts, num_parties=m, k=k)} if certify else {}
        probs = counts.to(h.dtype) / v
        return DefenseOutput(
            probs=probs,
            labels=vote_predict(counts),
            scores=torch.zeros(observed.shape, device=h.device),
            flagged=torch.zeros_like(observed),
            certificate=certificate,
        )


_BUILDERS: dict[str, Callable[[Engine], Defense]] = {
    "none": NoDefense,
    "ae": AEDefense,
    "rs": lambda engine: SmoothingDefense(engine, purifier=None),
    "copur-ref": lambda engine: PurifyDefense(engine, "copur-ref"),
    "copur-l21": lambda engine: PurifyDefense(engine, "copur-l21"),
    "copur": lambda engine: PurifyDefense(engine, "copur"),
    "copur+rs": lambda engine: SmoothingDefense(engine, purifier="copur"),
    "vote": VoteDefense,
}
#: every defense's name, in the order reports show them
DEFENSES: tuple[str, ...] = tuple(_BUILDERS)


class Engine:
    """A bundle's networks, calibration and generator on one device; builds defenses by name."""

    def __init__(self, bundle: Bundle, *, device: torch.device | str = "cpu", config: EngineConfig | None = None):
        if bundle.calibration is None:
            raise BundleError(f"bundle {bundle.path} has no calibration.json: run `copur calibrate {bundle.path}`")
        self.config = config or EngineConfig()
        self.device = torch.device(device)
        self.models = bundle.models.to(self.device)
        self.manifest_classes = bundle.manifest.num_classes
        self.num_parties = bundle.manifest.num_parties
        self.emb_dim = bundle.manifest.model["emb_dim"]
        self.calibration = bundle.calibration
        self.block_scale = torch.tensor(self.calibration["block_scale"], device=self.device)
        self._bundle = bundle
        self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        self._purifiers: dict[str, Purifier] = {}
        self._defenses: dict[str, Defense] = {}

    def mask(self, h: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        return h * expand_blocks(observed.to(h.dtype), self.emb_dim)

    def _make(self, name: str, threshold: list[float] | None, **config: object) -> Purifier:
        thr = torch.tensor(threshold, device=self.device) if threshold is not None else None
        bank = bundle_bank(self._bundle).to(self.device) if PURIFIERS[name].uses_bank else None
        return make_purifier(
            name,
            autoencoder=self.models.autoencoder,
            num_parties=self.num_parties,
            block_scale=self.block_scale,
            threshold=thr,
            bank=bank,
            **config,
        )

    def purifier(self, name: str) -> Purifier:
        """The purifier ``name`` with the bundle's calibrated thresholds (built once)."""
        if name not in self._purifiers:
            thresholds = self.calibration.get("thresholds", {})
            if name not in thresholds:
                raise BundleError(
                    f"bundle {self._bundle.path} has no calibration for purifier '{name}' (calibrated by an older "
                    f"version): run `copur calibrate {self._bundle.path}`"
                )
            configs: dict[str, object] = {"copur": self.config.consensus, "copur-l21": self.config.robust}
            extra = {"config": configs[name]} if name in configs else {}
            self._purifiers[name] = self._make(name, thresholds[name], **extra)
        return self._purifiers[name]

    def voter_purifier(self) -> Purifier:
        """Decode from the voter's own parties only: one start, no detection."""
        if "voter" not in self._purifiers:
            cfg = RobustConfig(start_hidden=0, detect=False, steps=self.config.robust.steps)
            self._purifiers["voter"] = self._make("copur-l21", None, config=cfg)
        return self._purifiers["voter"]

    def defense(self, name: str) -> Defense:
        """The defense ``name``; unknown names are a ConfigError listing the known ones."""
        if name not in self._defenses:
            if name not in _BUILDERS:
                raise ConfigError(f"unknown defense '{name}' (known: {', '.join(DEFENSES)})")
            self._defenses[name] = _BUILDERS[name](self)
        return self._defenses[name]
