"""Running the evaluation on a bundle's test split: the worst-of-suite headline and the
per-attack grid.

``run_grid`` runs the standard grid (every scenario of
:func:`copur.evaluation.grid.standard_grid` against every defense, each attack alone) and, unless
switched off, :func:`copur.evaluation.suite.run_suite` (every attack of the suite at every
attacker set, a sample counting only when no attack changes its answer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from copur.errors import ConfigError
from copur.evaluation.grid import Scenario, standard_grid
from copur.evaluation.suite import SuiteConfig, attack_suite, attacker_sets, run_suite
from copur.science.attacks import AttackContext, make_attack
from copur.science.bundle import Bundle
from copur.science.certify import certified_accuracy
from copur.science.data import load_dataset
from copur.science.defenses import DEFAULT_DEFENSE, DEFENSES, Engine, EngineConfig

__all__ = ["EvalConfig", "run_grid"]


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """The grid's and the suite's sizes. ``suite_samples``: the worst of the suite is measured on
    the first this many evaluated samples; ``search``: candidates per query-based attack;
    ``suite_steps``: gradient steps per gradient attack; ``liars``: the numbers of lying parties;
    ``max_sets``: per t, at most this many attacker sets (spread evenly; absent: all);
    ``suite_attacks``: keep only the suite's attacks of these names (empty: the whole suite), to
    measure one family, e.g. the query-based lies against the search budget."""

    quick: bool = False
    defenses: tuple[str, ...] = DEFENSES
    max_samples: int | None = None
    adaptive_samples: int = 100
    seed: int = 0
    engine: EngineConfig = field(default_factory=EngineConfig)
    suite: bool = True
    suite_samples: int = 200
    search: int = 32
    suite_steps: int = 50
    liars: tuple[int, ...] = (0, 1, 2, 3)
    max_sets: dict[int, int] = field(default_factory=lambda: {3: 5})
    suite_attacks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = sorted({a.attack for a in attack_suite()})
        unknown = [a for a in self.suite_attacks if a not in names]
        if unknown:
            raise ConfigError(
                f"unknown suite attack '{unknown[0]}' (the suite's: {', '.join(names)})"
            )

    @property
    def samples(self) -> int | None:
        """Test samples to evaluate on: ``max_samples``, else 100 with ``quick``, else all
        (None)."""
        return self.max_samples if self.max_samples is not None else (100 if self.quick else None)

    def suite_config(self) -> SuiteConfig:
        """The worst-of-suite run this configuration asks for (the whole suite, or only
        ``suite_attacks``)."""
        exhaustive = (DEFAULT_DEFENSE,) if DEFAULT_DEFENSE in self.defenses else ()
        attacks = attack_suite(search=self.search, steps=self.suite_steps)
        if self.suite_attacks:
            attacks = tuple(a for a in attacks if a.attack in self.suite_attacks)
        return SuiteConfig(
            attacks=attacks,
            liars=self.liars,
            max_sets=self.max_sets,
            exhaustive=exhaustive,
        )


def _flag_quality(flagged: torch.Tensor, attackers: tuple[int, ...]) -> dict[str, float]:
    """Precision (only when something was flagged) and recall of the flags against the true
    attackers."""
    truth = torch.zeros_like(flagged)
    truth[:, list(attackers)] = True
    tp, fp, fn = (
        int((flagged & truth).sum()),
        int((flagged & ~truth).sum()),
        int((~flagged & truth).sum()),
    )
    quality = {"flag_recall": tp / (tp + fn)}
    if tp + fp:
        quality["flag_precision"] = tp / (tp + fp)
    return quality


def _record(
    sc: Scenario,
    defense: str,
    out_labels: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor,
    flagged: torch.Tensor | None,
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "scenario": sc.name,
        "family": sc.family,
        "attack": sc.attack,
        "attackers": list(sc.attackers),
        "params": sc.params,
        "defense": defense,
        "n": len(y),
        "accuracy": float((out_labels == y).float().mean()),
        "abstain_rate": float((out_labels < 0).float().mean()),
    }
    if sc.targeted:
        eligible = y != target
        rec["attack_success_rate"] = float(
            (out_labels[eligible] == target[eligible]).float().mean()
        )
    if flagged is not None and sc.attackers and sc.attack != "drop":
        rec.update(_flag_quality(flagged, sc.attackers))
    return rec


def run_grid(
    bundle: Bundle, config: EvalConfig, *, device: torch.device | str = "cpu", progress: bool = True
) -> dict[str, Any]:
    """Evaluate every scenario of the standard grid with every configured defense; return the
    report data."""
    engine = Engine(bundle, device=device, config=config.engine)
    data = load_dataset(bundle.manifest.dataset_spec)
    rng = np.random.default_rng(config.seed)
    ids = bundle.test_ids
    if config.samples is not None and config.samples < len(ids):
        ids = np.sort(rng.choice(ids, size=config.samples, replace=False))
    dev = engine.device
    with torch.no_grad():
        h = engine.models.embed([torch.as_tensor(x, device=dev) for x in data.party_rows(ids)])
        pool = engine.models.embed(
            [torch.as_tensor(x, device=dev) for x in data.party_rows(bundle.val_ids)]
        )
        # Donors for mimicry: every training and validation sample (a liar can embed any of them).
        donor_ids = np.concatenate([bundle.train_ids, bundle.val_ids])
        donors = engine.models.embed(
            [torch.as_tensor(x, device=dev) for x in data.party_rows(donor_ids)]
        )
    donor_labels = torch.as_tensor(data.labels[donor_ids], device=dev)
    y = torch.as_tensor(data.labels[ids], device=dev)
    num_classes, m = bundle.manifest.num_classes, bundle.manifest.num_parties
    target = (y + 1) % num_classes
    full = torch.ones(len(h), m, dtype=torch.bool, device=dev)
    grid = standard_grid(m, quick=config.quick)
    gen = torch.Generator().manual_seed(config.seed)
    records: list[dict[str, Any]] = []
    certified: dict[str, dict[int, float]] = {}
    head = engine.defense("none").logits
    for sc in tqdm(grid, desc="evaluating", disable=not progress):
        names = [d for d in config.defenses if sc.defenses is None or d in sc.defenses]
        if sc.attack == "adaptive":
            records += _adaptive(engine, sc, names, h, y, full, gen, config.adaptive_samples)
            continue
        hh, obs = h, full
        if sc.attack is not None:
            ctx = AttackContext(
                num_parties=m, generator=gen, labels=y, target=target, model=head, pool=pool
            )
            hh, obs = make_attack(sc.attack, **sc.params)(h, full, sc.attackers, ctx)
        for name in names:
            certify = sc.attack is None and name == "vote"
            out = engine.defense(name).predict(hh, obs, certify=certify)
            rec = _record(
                sc, name, out.labels, y, target, out.flagged if name.startswith("copur") else None
            )
            if certify:
                cert = certified_accuracy(
                    out.labels, out.certificate["certified_parties"], y, max_t=m // 2
                )
                certified[name] = cert
                rec["certified_accuracy"] = cert
            records.append(rec)
    suite: dict[str, Any] = {}
    if config.suite:
        suite = _suite(engine, config, h, y, donors, donor_labels, progress)
    return {
        **suite,
        "default_defense": DEFAULT_DEFENSE,
        "dataset": bundle.manifest.dataset["name"],
        "bundle": str(bundle.path),
        "num_parties": m,
        "party_names": bundle.manifest.party_names,
        "quick": config.quick,
        "num_test_samples": len(ids),
        "adaptive_samples": min(config.adaptive_samples, len(ids)),
        "seed": config.seed,
        "vote_k": config.engine.vote_k,
        "results": records,
        "certified_accuracy": certified.get("vote", {}),
    }


def _suite(
    engine: Engine,
    config: EvalConfig,
    h: torch.Tensor,
    y: torch.Tensor,
    donors: torch.Tensor,
    donor_labels: torch.Tensor,
    progress: bool,
) -> dict[str, Any]:
    """The worst-of-suite part of the report, with the vote's certified accuracy on the same
    samples (a seeded choice of ``suite_samples`` of the evaluated samples, every class in
    proportion on average)."""
    n = min(config.suite_samples, len(h))
    pick = np.sort(np.random.default_rng(config.seed + 1).choice(len(h), size=n, replace=False))
    index = torch.as_tensor(pick, device=h.device)
    hs, ys = h[index], y[index]
    suite_cfg = config.suite_config()
    out = run_suite(
        engine,
        h=hs,
        y=ys,
        pool=donors,
        pool_labels=donor_labels,
        defenses=config.defenses,
        config=suite_cfg,
        generator=torch.Generator().manual_seed(config.seed),
        progress=progress,
    )
    m = engine.num_parties
    full = torch.ones(n, m, dtype=torch.bool, device=hs.device)
    vote = engine.defense("vote").predict(hs, full, certify=True)
    floor = certified_accuracy(vote.labels, vote.certificate["certified_parties"], ys, max_t=m // 2)
    out["suite"] = {
        "samples": n,
        "donors": len(donors),
        "attacks": [a.to_dict() for a in suite_cfg.attacks],
        "sets": {
            str(t): [list(s) for s in attacker_sets(m, t, suite_cfg.max_sets.get(t))]
            for t in suite_cfg.liars
            if t < m
        },
        "exhaustive": list(suite_cfg.exhaustive),
        "certified_accuracy": {str(t): v for t, v in floor.items()},
    }
    return out


def _adaptive(
    engine: Engine,
    sc: Scenario,
    names: list[str],
    h: torch.Tensor,
    y: torch.Tensor,
    full: torch.Tensor,
    gen: torch.Generator,
    limit: int,
) -> list[dict[str, Any]]:
    """PGD through each differentiable defense itself, on the first ``limit`` samples."""
    hs, ys, obs = h[:limit], y[:limit], full[:limit]
    out = []
    for name in names:
        defense = engine.defense(name)
        if not defense.differentiable:
            continue
        ctx = AttackContext(
            num_parties=full.shape[1], generator=gen, labels=ys, model=defense.logits
        )
        hh, o = make_attack("adaptive", **sc.params)(hs, obs, sc.attackers, ctx)
        pred = defense.predict(hh, o)
        out.append(
            _record(
                sc, name, pred.labels, ys, ys, pred.flagged if name.startswith("copur") else None
            )
        )
    return out
