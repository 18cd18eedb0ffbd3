"""Corrupting one party's answer with the attack library (no transport: donor blocks come through
the context's :class:`~copur.roles.adversary.donors.DonorBook`, whose fetcher the server
supplies).

The adversary sees only its own party's block. To run an attack written for the full embedding h
= [h_1 .. h_M] it assembles h from its real block and, for every other party, the calibrated mean
block of the bundle; the attack then rewrites the adversary's block only, which is what it sends.
Gradient attacks differentiate the bundle's head (``pgd``) or the ``copur`` defense
(``adaptive``); without the true labels, untargeted ones push away from the attacked model's own
clean prediction.

``lma`` and ``evade`` differentiate and query the same local simulation as ``adaptive``.

``mimic`` sends this party's block of a donor sample (by id, or the deterministic donor of a
class): the library's :class:`~copur.science.attacks.Mimic` runs on a pool holding that one donor
row, so the same code as the evaluation grid produces the lie. ``sia`` cannot query the fusion
center: its query is a LOCAL SIMULATION, the ``copur`` defense of the adversary's own engine on
the assembled h (mean blocks for the other parties); its pool holds, for every class, the first
donors of that class (this party's blocks, fetched once)."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import torch

from copur.errors import BundleError, ConfigError
from copur.roles.adversary.donors import DonorBook, Embedder
from copur.roles.adversary.policy import Policy
from copur.science.attacks import LMA, PGD, SIA, Adaptive, AttackContext, Evade, Mimic, Replace
from copur.science.attacks.base import Query
from copur.science.bundle import Bundle
from copur.science.data import load_dataset
from copur.science.defenses import Engine

__all__ = [
    "POOL_ROWS",
    "SIMULATED_DEFENSE",
    "SIMULATION_BATCH",
    "AdversaryContext",
    "corrupt_block",
    "sia_donors_per_class",
]

SIMULATED_DEFENSE: Final = "copur"
"""The defense ``sia`` (and ``adaptive``) simulate locally: the fusion center's default."""
SIMULATION_BATCH: Final = 128
"""Most rows per query of the local simulation (``sia`` asks it about every candidate of every
sample)."""

POOL_ROWS: Final = 4096
"""How many recent clean rows of its own the adversary keeps for ``replace``."""


@dataclass(kw_only=True, eq=False)
class AdversaryContext:
    """What the adversary knows besides the live block: the bundle's shapes, the calibrated mean
    block of every party (M, e), the models (via an :class:`Engine`, for gradient attacks and
    ``sia``'s simulation), the donors (a :class:`DonorBook`, for ``mimic`` and ``sia``), a seeded
    generator and a bounded ring buffer of its own recent clean rows. One lock serialises every
    use of it (the donor book has its own)."""

    num_parties: int
    emb_dim: int
    num_classes: int
    block_mean: np.ndarray
    engine: Engine | None = None
    donors: DonorBook | None = None
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))
    pool_rows: int = POOL_ROWS
    lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: np.ndarray = field(init=False, repr=False)
    _filled: int = field(default=0, init=False, repr=False)
    _next: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.block_mean = np.asarray(self.block_mean, dtype=np.float32)
        if self.block_mean.shape != (self.num_parties, self.emb_dim):
            raise ValueError(
                f"block_mean has shape {self.block_mean.shape}, expected ({self.num_parties}, "
                f"{self.emb_dim})"
            )
        if self.pool_rows < 1:
            raise ValueError(f"pool_rows must be >= 1, got {self.pool_rows}")
        self._pool = np.zeros((self.pool_rows, self.emb_dim), dtype=np.float32)

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        *,
        seed: int = 0,
        pool_rows: int = POOL_ROWS,
        data_dir: str | None = None,
        embed: Embedder | None = None,
    ) -> AdversaryContext:
        """The context of a calibrated bundle (its ``calibration.json`` must hold
        ``block_mean``). Donors: the bundle's validation split, the labels of its data set
        (``data_dir`` overrides where the files are; loaded on first use) and this party's
        blocks fetched through ``embed``."""
        calibration = bundle.calibration
        if calibration is None:
            raise BundleError(
                f"bundle {bundle.path} has no calibrated block means: run `copur calibrate "
                f"{bundle.path}`"
            )
        manifest = bundle.manifest
        spec = manifest.dataset_spec
        if data_dir is not None:
            spec = dataclasses.replace(spec, data_dir=data_dir)
        donors = DonorBook(
            num_classes=manifest.num_classes,
            emb_dim=int(manifest.model["emb_dim"]),
            val_ids=bundle.val_ids,
            labels=lambda: load_dataset(spec).labels,
            embed=embed,
        )
        return cls(
            num_parties=manifest.num_parties,
            emb_dim=int(manifest.model["emb_dim"]),
            num_classes=manifest.num_classes,
            block_mean=np.asarray(calibration.block_mean, dtype=np.float32),
            engine=Engine(bundle),
            donors=donors,
            generator=torch.Generator().manual_seed(seed),
            pool_rows=pool_rows,
        )

    def check(self, policy: Policy) -> None:
        """Refuse (ConfigError) a policy this context cannot carry out: a target class out of
        range, a gradient attack or ``sia`` without models, ``mimic`` or ``sia`` without
        donors, a donor id outside the data set or a donor class out of range."""
        target = policy.target
        if target is not None and target >= self.num_classes:
            raise ConfigError(
                f"parameter 'target' must be a class index 0..{self.num_classes - 1}, got {target}"
            )
        attack = policy.build()
        if isinstance(attack, PGD | SIA | LMA | Evade) and self.engine is None:
            raise ConfigError(
                f"attack '{policy.attack}' needs the bundle's models, which this adversary lacks"
            )
        if isinstance(attack, Mimic | SIA):
            book = self._book(policy)
            if policy.donor is not None:
                book.check_donor(policy.donor)
            if policy.donor_class is not None:
                book.check_class(policy.donor_class)

    def _book(self, policy: Policy) -> DonorBook:
        if self.donors is None:
            raise ConfigError(
                f"attack '{policy.attack}' needs donor samples, which this adversary lacks"
            )
        return self.donors

    def donor_ids(self, policy: Policy) -> list[int]:
        """The donor sample ids ``policy`` sends blocks of: ``mimic``'s one donor (by id, or its
        class's); ``sia``'s donors of every class (:func:`sia_donors_per_class` each); none for
        other attacks."""
        attack = policy.build()
        if isinstance(attack, Mimic):
            if policy.donor is not None:
                return [policy.donor]
            assert policy.donor_class is not None  # the policy demands one of them
            return self._book(policy).of_class(policy.donor_class)[:1]
        if isinstance(attack, SIA):
            book, per_class = (
                self._book(policy),
                sia_donors_per_class(attack.search, self.num_parties),
            )
            return [i for c in range(self.num_classes) for i in book.of_class(c, per_class)]
        return []

    def prepare(self, policy: Policy) -> list[int]:
        """Check ``policy`` and fetch (once) the blocks of its donors; return the donor ids."""
        self.check(policy)
        ids = self.donor_ids(policy)
        if ids:
            self._book(policy).blocks(ids)
        return ids

    def remember(self, block: np.ndarray) -> None:
        """Add clean rows (n, e) to the ring buffer, dropping the oldest beyond ``pool_rows``."""
        rows = block[-self.pool_rows :]
        idx = (self._next + np.arange(len(rows))) % self.pool_rows
        self._pool[idx] = rows
        self._next = int((self._next + len(rows)) % self.pool_rows)
        self._filled = min(self.pool_rows, self._filled + len(rows))

    def pool(self) -> np.ndarray:
        """The remembered clean rows (at most ``pool_rows``, e), a copy."""
        return self._pool[: self._filled].copy()


def _assemble(block: np.ndarray, party: int, ctx: AdversaryContext) -> torch.Tensor:
    """(n, M*e): the calibrated mean block for every party but ``party``, whose block is the real
    one."""
    h = np.repeat(ctx.block_mean[None], len(block), axis=0)
    h[:, party] = block
    return torch.from_numpy(h.reshape(len(block), -1))


def sia_donors_per_class(search: int, num_parties: int) -> int:
    """How many donors of each class ``sia``'s pool holds: as many as its search ranks by
    nearness per class (the nearest half of max(2, search) candidates spread over the honest
    parties), so that the ranking never has to fall back on donors of another class."""
    n = max(2, search)
    return max(1, -(-(n - n // 2) // max(1, num_parties - 1)))


def _simulated_query(engine: Engine) -> Query:
    """The local simulation of the fusion center an attack may query: the ``copur`` defense of
    ``engine``."""
    return engine.defense(SIMULATED_DEFENSE).query


def _pool_rows(party: int, ctx: AdversaryContext) -> torch.Tensor | None:
    """The remembered rows as full-width rows (only ``party``'s slot matters), or None when none
    yet."""
    rows = ctx.pool()
    if len(rows) == 0:
        return None
    full = np.zeros((len(rows), ctx.num_parties, ctx.emb_dim), dtype=np.float32)
    full[:, party] = rows
    return torch.from_numpy(full.reshape(len(rows), -1))


def corrupt_block(
    block: np.ndarray, *, policy: Policy, party: int, num_parties: int, context: AdversaryContext
) -> np.ndarray | None:
    """Party ``party``'s block (n, e) as the adversary sends it under ``policy``, or None when it
    does not answer (``drop``). ``none`` returns ``block`` itself. Every block seen is remembered
    for ``replace`` (which draws from the rows remembered before this call, or from this batch
    while there are none). ``mimic`` and ``sia`` use the donors' blocks, fetched through the
    context's donor book on first use."""
    block = np.asarray(block, dtype=np.float32)
    if block.ndim != 2 or block.shape[1] != context.emb_dim:
        raise ValueError(f"block has shape {block.shape}, expected (n, {context.emb_dim})")
    if num_parties != context.num_parties:
        raise ValueError(
            f"num_parties {num_parties} does not match the bundle's {context.num_parties}"
        )
    if not 0 <= party < num_parties:
        raise ValueError(f"party {party} is not a party (0..{num_parties - 1})")
    donor_ids = context.prepare(
        policy
    )  # checks; fetches donor blocks once, outside the context's lock
    donor_blocks = (
        context.donors.blocks(donor_ids) if context.donors is not None and donor_ids else None
    )
    attack = policy.build()
    with context.lock:
        if attack is None or len(block) == 0:
            context.remember(block)
            return None if policy.attack == "drop" else block
        h = _assemble(block, party, context)
        observed = torch.ones(len(block), num_parties, dtype=torch.bool)
        labels = target = model = pool = pool_labels = query = None
        if isinstance(attack, PGD):
            assert context.engine is not None  # context.check refused it otherwise
            defense = context.engine.defense(
                SIMULATED_DEFENSE if isinstance(attack, Adaptive) else "none"
            )
            model = defense.logits
            if policy.target is not None:
                target = torch.full((len(block),), policy.target, dtype=torch.long)
            else:
                labels = defense.predict(h, observed).labels
        if isinstance(attack, Replace):
            pool = _pool_rows(party, context)
        # Donor rows are assembled the way the live block is (mean blocks for the other parties).
        if isinstance(attack, Mimic):  # the one donor, as pool row 0
            assert donor_blocks is not None
            pool = _assemble(donor_blocks, party, context)
            attack = dataclasses.replace(attack, donor=0)
        if isinstance(attack, SIA):
            assert (
                context.engine is not None
                and context.donors is not None
                and donor_blocks is not None
            )
            pool = _assemble(donor_blocks, party, context)
            pool_labels = torch.as_tensor(context.donors.labels[donor_ids], dtype=torch.long)
            query = _simulated_query(context.engine)
            model = context.engine.defense(SIMULATED_DEFENSE).logits if attack.steps > 0 else None
        if isinstance(
            attack, LMA | Evade
        ):  # gradient and flags of the local simulation, like adaptive
            assert context.engine is not None
            model = context.engine.defense(SIMULATED_DEFENSE).logits
            query = _simulated_query(context.engine)
        ctx = AttackContext(
            num_parties=num_parties,
            generator=context.generator,
            labels=labels,
            target=target,
            model=model,
            query=query,
            pool=pool,
            pool_labels=pool_labels,
            query_batch=SIMULATION_BATCH,
        )
        hh, obs = attack(h, observed, (party,), ctx)
        context.remember(block)
    if not bool(obs[:, party].all()):
        return None
    e = context.emb_dim
    return np.ascontiguousarray(
        hh[:, party * e : (party + 1) * e].detach().numpy(), dtype=np.float32
    )
