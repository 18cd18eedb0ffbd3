"""mimic and sia in the live adversary (corrupt_block): donor blocks come from the party itself
(its own embedding of the donor sample), a donor by class is deterministic so that two
adversaries collude, and sia aims at the runner-up class of its local simulation of the copur
defense."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adversary.support import PARTY, Clean, M
from copur.errors import ConfigError
from copur.roles.adversary import AdversaryContext, Policy, corrupt_block
from copur.roles.adversary.corrupt import SIMULATED_DEFENSE, sia_donors_per_class
from copur.science.attacks.search import FACTORS
from copur.science.bundle import Bundle
from copur.science.data import load_dataset

OTHER = 4
"""A second party, colluding with PARTY."""


class Upstream:
    """The real party's Embed by sample id, as the adversary's fetcher sees it; records every
    call."""

    def __init__(self, every_block: np.ndarray, party: int) -> None:
        self.blocks, self.party = every_block, party
        self.calls: list[list[int]] = []

    def __call__(self, ids) -> np.ndarray:
        self.calls.append(list(ids))
        return self.blocks[list(ids), self.party]


@pytest.fixture(scope="module")
def labels(mfeat_bundle: Bundle) -> np.ndarray:
    return load_dataset(mfeat_bundle.manifest.dataset_spec).labels


def _context(
    bundle: Bundle, every_block: np.ndarray, party: int = PARTY
) -> tuple[AdversaryContext, Upstream]:
    upstream = Upstream(every_block, party)
    return AdversaryContext.from_bundle(bundle, seed=0, embed=upstream), upstream


def _corrupt(
    block: np.ndarray, policy: Policy, context: AdversaryContext, party: int = PARTY
) -> np.ndarray:
    out = corrupt_block(block, policy=policy, party=party, num_parties=M, context=context)
    assert out is not None and out.shape == block.shape and out.dtype == np.float32
    return out


def _class_donor(bundle: Bundle, labels: np.ndarray, cls: int) -> int:
    return int(min(i for i in bundle.val_ids if labels[i] == cls))


def test_mimic_by_id_sends_the_partys_own_block_of_the_donor(
    mfeat_bundle: Bundle, every_block: np.ndarray, clean: Clean
) -> None:
    # Prepare
    context, upstream = _context(mfeat_bundle, every_block)
    block = clean.table[:12]

    # Execute
    out = _corrupt(block, Policy(attack="mimic", params={"donor": 1014}), context)

    # Assert: every sample now carries the donor's block, as the party itself embeds it
    np.testing.assert_allclose(
        out, np.repeat(every_block[1014, PARTY][None], 12, axis=0), atol=1e-6
    )
    assert upstream.calls == [[1014]]


def test_a_donor_is_fetched_once(
    mfeat_bundle: Bundle, every_block: np.ndarray, clean: Clean
) -> None:
    context, upstream = _context(mfeat_bundle, every_block)
    policy = Policy(attack="mimic", params={"donor": 77})

    first = _corrupt(clean.table[:5], policy, context)
    second = _corrupt(clean.table[5:9], policy, context)

    assert upstream.calls == [[77]]
    sent = np.concatenate([first, second])
    np.testing.assert_allclose(sent, np.repeat(every_block[77, PARTY][None], 9, axis=0), atol=1e-6)


@pytest.mark.parametrize("factor", [0.25, 0.5, 1.5])
def test_mimic_moves_factor_of_the_way_to_the_donor(
    mfeat_bundle: Bundle, every_block: np.ndarray, clean: Clean, factor: float
) -> None:
    context, _ = _context(mfeat_bundle, every_block)
    block = clean.table[:10]

    out = _corrupt(block, Policy(attack="mimic", params={"donor": 5, "factor": factor}), context)

    np.testing.assert_allclose(
        out, block + factor * (every_block[5, PARTY] - block), rtol=1e-5, atol=1e-6
    )


def test_mimic_by_class_sends_the_lowest_validation_sample_of_the_class(
    mfeat_bundle: Bundle, every_block: np.ndarray, clean: Clean, labels: np.ndarray
) -> None:
    # Prepare
    context, upstream = _context(mfeat_bundle, every_block)
    policy = Policy(attack="mimic", params={"donor_class": 7})
    donor = _class_donor(mfeat_bundle, labels, 7)

    # Execute
    out = _corrupt(clean.table[:10], policy, context)

    # Assert
    assert context.donor_ids(policy) == [donor] and labels[donor] == 7
    assert upstream.calls == [[donor]]
    np.testing.assert_allclose(
        out, np.repeat(every_block[donor, PARTY][None], 10, axis=0), atol=1e-6
    )


@pytest.mark.parametrize("params", [{"donor": 321}, {"donor_class": 5}], ids=["by-id", "by-class"])
def test_two_adversaries_given_the_same_donor_collude(
    mfeat_bundle: Bundle, every_block: np.ndarray, params: dict, labels: np.ndarray
) -> None:
    # Prepare: two independent adversaries, in front of two different parties, told the same donor
    ids = mfeat_bundle.test_ids[:15]
    policy = Policy(attack="mimic", params=params)
    first, _ = _context(mfeat_bundle, every_block, PARTY)
    second, _ = _context(mfeat_bundle, every_block, OTHER)

    # Execute
    out_first = _corrupt(every_block[ids, PARTY], policy, first, PARTY)
    out_second = _corrupt(every_block[ids, OTHER], policy, second, OTHER)

    # Assert: both send their own party's block of one and the same donor sample
    (donor,) = first.donor_ids(policy)
    assert second.donor_ids(policy) == [donor]
    assert donor == params.get("donor", _class_donor(mfeat_bundle, labels, 5))
    np.testing.assert_allclose(
        out_first, np.repeat(every_block[donor, PARTY][None], 15, axis=0), atol=1e-6
    )
    np.testing.assert_allclose(
        out_second, np.repeat(every_block[donor, OTHER][None], 15, axis=0), atol=1e-6
    )


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"donor": 2000}, "parameter 'donor' must be a sample id 0..1999"),
        ({"donor_class": 10}, "'donor_class'"),
    ],
)
def test_a_donor_outside_the_data_set_is_refused_without_asking_upstream(
    mfeat_bundle: Bundle, every_block: np.ndarray, clean: Clean, params: dict, named: str
) -> None:
    context, upstream = _context(mfeat_bundle, every_block)

    with pytest.raises(ConfigError) as caught:
        _corrupt(clean.table[:4], Policy(attack="mimic", params=params), context)

    assert named in str(caught.value) and "\n" not in str(caught.value)
    assert upstream.calls == []


def test_without_an_upstream_no_donor_block_can_be_had(mfeat_bundle: Bundle, clean: Clean) -> None:
    context = AdversaryContext.from_bundle(mfeat_bundle)

    with pytest.raises(ConfigError, match="no upstream party to fetch donor blocks from"):
        _corrupt(clean.table[:4], Policy(attack="mimic", params={"donor": 3}), context)


def test_sia_sends_a_donor_of_the_runner_up_class_of_its_local_simulation(
    mfeat_bundle: Bundle, every_block: np.ndarray, clean: Clean, labels: np.ndarray
) -> None:
    # Prepare
    context, upstream = _context(mfeat_bundle, every_block)
    block = clean.table[:16]
    policy = Policy(attack="sia", params={"search": 8})
    assert context.engine is not None
    simulated = context.engine.defense(SIMULATED_DEFENSE).predict(
        clean.assemble(block), torch.ones(len(block), M, dtype=torch.bool)
    )
    runner_up = (
        simulated.probs.scatter(1, simulated.labels.unsqueeze(1), -1.0).argmax(dim=1).numpy()
    )

    # Execute
    out = _corrupt(block, policy, context)

    # Assert: the pool holds the first donors of every class, fetched in one call ...
    donors = context.donor_ids(policy)
    per_class = sia_donors_per_class(8, M)
    assert upstream.calls == [sorted(donors)]
    assert sorted(labels[donors].tolist()) == sorted(list(range(10)) * per_class)
    assert all(_class_donor(mfeat_bundle, labels, c) in donors for c in range(10))
    # ... and each sample's block is one of its runner-up class's donors, moved by one of the
    # search's factors
    for row, cls in enumerate(runner_up):
        own = [d for d in donors if labels[d] == cls]
        candidates = [
            block[row] + f * (every_block[d, PARTY] - block[row]) for d in own for f in FACTORS
        ]
        gaps = [np.abs(out[row] - c).max() for c in candidates]
        assert min(gaps) < 1e-5, (row, cls)


def test_sia_counts_as_an_attack_that_needs_the_models(mfeat_bundle: Bundle, clean: Clean) -> None:
    context = AdversaryContext.from_bundle(mfeat_bundle)
    context.engine = None

    with pytest.raises(ConfigError, match="needs the bundle's models"):
        _corrupt(clean.table[:4], Policy(attack="sia"), context)
