import itertools

import pytest
import torch

from copur.errors import ConfigError
from copur.science.certify.smoothing import ABSTAIN
from copur.science.certify.vote import (
    certified_accuracy,
    certified_parties,
    changeable_voters,
    subset_voters,
    tally,
    vote_predict,
)

NUM_CLASSES = 3
CHOICES = torch.tensor([ABSTAIN, *range(NUM_CLASSES)], dtype=torch.int64)


def test_subset_voters_are_the_k_subsets_in_combinations_order() -> None:
    # Execute
    voters = subset_voters(4, 2)

    # Assert
    assert voters == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert subset_voters(3, 3) == [(0, 1, 2)]


@pytest.mark.parametrize(("num_parties", "k"), [(4, 0), (4, 5), (0, 1)])
def test_subset_voters_rejects_k_out_of_range(num_parties: int, k: int) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match="k"):
        subset_voters(num_parties, k)


@pytest.mark.parametrize(
    ("t", "expected"),
    [(-1, 0), (0, 0), (1, 5), (2, 9), (3, 12), (4, 14), (5, 15), (6, 15), (9, 15)],
)
def test_changeable_voters_for_six_parties_in_pairs(t: int, expected: int) -> None:
    # Execute
    value = changeable_voters(6, 2, t)

    # Assert
    assert value == expected


@pytest.mark.parametrize(("num_parties", "k"), [(4, 2), (5, 1), (5, 3), (6, 2)])
def test_changeable_voters_equals_the_worst_attacker_set(num_parties: int, k: int) -> None:
    # Prepare
    voters = subset_voters(num_parties, k)

    # Execute / Assert: by brute force over attacker sets, the count is the same for every set of
    # size t.
    for t in range(num_parties + 1):
        touched = {
            sum(1 for s in voters if set(s) & set(attackers))
            for attackers in itertools.combinations(range(num_parties), t)
        }
        assert touched == {changeable_voters(num_parties, k, t)}


def test_tally_counts_votes_and_ignores_abstentions() -> None:
    # Prepare
    votes = torch.tensor([[0, 1, 1, -1, 2, 1], [-1, -1, -1, -1, -1, -1], [2, 2, 0, 0, -1, 1]])

    # Execute
    counts = tally(votes, 3)

    # Assert
    assert counts.tolist() == [[1, 3, 1], [0, 0, 0], [2, 1, 2]]
    assert counts.dtype == torch.int64


@pytest.mark.parametrize("bad", [-2, 3])
def test_tally_rejects_votes_out_of_range(bad: int) -> None:
    # Execute / Assert
    with pytest.raises(ValueError):
        tally(torch.tensor([[0, bad]]), 3)


def test_vote_predict_breaks_ties_toward_the_lowest_class_and_abstains_on_no_votes() -> None:
    # Prepare
    counts = torch.tensor([[1, 3, 1], [0, 0, 0], [2, 1, 2], [0, 4, 4], [0, 0, 1]])

    # Execute
    pred = vote_predict(counts)

    # Assert
    assert pred.tolist() == [1, ABSTAIN, 0, 1, 2]
    assert pred.dtype == torch.int64


def test_certified_parties_by_hand() -> None:
    # Prepare: M = 6, k = 2 has 15 voters; thresholds 2 * changeable = 0, 10, 18, 24, ...
    counts = torch.tensor(
        [[15, 0, 0], [11, 0, 0], [10, 0, 0], [6, 5, 0], [5, 5, 0], [0, 0, 0], [13, 1, 1]]
    )

    # Execute
    cert = certified_parties(counts, num_parties=6, k=2)

    # Assert
    assert cert.tolist() == [1, 1, 0, 0, -1, -1, 1]
    assert cert.dtype == torch.int64


def test_certified_parties_can_reach_several_parties() -> None:
    # Prepare: M = 8, k = 1: each party is one voter; gap g certifies t < g / 2.
    counts = torch.tensor([[8, 0], [7, 1], [5, 0], [4, 4]])

    # Execute
    cert = certified_parties(counts, num_parties=8, k=1)

    # Assert
    assert cert.tolist() == [3, 2, 2, -1]


def _random_tables(num: int, num_voters: int, seed: int) -> torch.Tensor:
    """Vote tables (num, V) over {-1, 0, 1, 2}: per table a random share of voters backs one
    class, the rest vote uniformly (abstaining included), so both clear winners and near ties
    occur."""
    gen = torch.Generator().manual_seed(seed)
    uniform = CHOICES[torch.randint(0, len(CHOICES), (num, num_voters), generator=gen)]
    favourite = torch.randint(0, NUM_CLASSES, (num, 1), generator=gen).expand(num, num_voters)
    loyalty = torch.rand(num, 1, generator=gen)
    loyal = torch.rand(num, num_voters, generator=gen) < loyalty
    return torch.where(loyal, favourite, uniform)


def _predictions_under_attack(
    votes: torch.Tensor, voters: list[tuple[int, ...]], attackers: tuple[int, ...]
) -> torch.Tensor:
    """vote_predict for EVERY reassignment over {-1, 0, 1, 2} of the voters that see an attacked
    party."""
    touched = [i for i, s in enumerate(voters) if set(s) & set(attackers)]
    if not touched:
        return vote_predict(tally(votes[None, :], NUM_CLASSES))
    grid = torch.cartesian_prod(*[CHOICES] * len(touched)).reshape(-1, len(touched))
    attacked = votes[None, :].repeat(grid.shape[0], 1)
    attacked[:, touched] = grid
    return vote_predict(tally(attacked, NUM_CLASSES))


@pytest.mark.parametrize(("num_parties", "k", "seed"), [(4, 2, 0), (5, 1, 1), (5, 2, 2)])
def test_certificate_holds_against_every_attack_by_brute_force(
    num_parties: int, k: int, seed: int
) -> None:
    # Prepare
    voters = subset_voters(num_parties, k)
    votes = _random_tables(150, len(voters), seed)
    counts = tally(votes, NUM_CLASSES)

    # Execute
    pred = vote_predict(counts)
    cert = certified_parties(counts, num_parties=num_parties, k=k)

    # Assert: every attacker set of every size t <= cert, every reassignment, leaves the prediction
    # alone.
    for i in range(votes.shape[0]):
        for t in range(int(cert[i]) + 1):
            for attackers in itertools.combinations(range(num_parties), t):
                outcomes = _predictions_under_attack(votes[i], voters, attackers)
                assert bool((outcomes == pred[i]).all()), (votes[i].tolist(), attackers)
    # The tables exercise every certificate level the configuration can reach (for M = 4, k = 2 only
    # -1
    # and 0: one party touches 3 of the 6 voters, and a gap above 6 is impossible).
    reachable = max(
        t for t in range(num_parties + 1) if 2 * changeable_voters(num_parties, k, t) < len(voters)
    )
    assert set(cert.tolist()) == set(range(-1, reachable + 1))


@pytest.mark.parametrize(("num_parties", "k", "seed"), [(4, 2, 0), (5, 1, 1), (5, 2, 2)])
def test_certificate_is_not_vacuous(num_parties: int, k: int, seed: int) -> None:
    # Prepare
    voters = subset_voters(num_parties, k)
    votes = _random_tables(150, len(voters), seed)
    counts = tally(votes, NUM_CLASSES)
    pred = vote_predict(counts)
    cert = certified_parties(counts, num_parties=num_parties, k=k)

    # Execute: for each certified level t, look for a table certified at exactly t that t + 1
    # parties break.
    broken_levels = set()
    for i in range(votes.shape[0]):
        t = int(cert[i])
        if t < 0 or t in broken_levels:
            continue
        for attackers in itertools.combinations(range(num_parties), t + 1):
            if not bool((_predictions_under_attack(votes[i], voters, attackers) == pred[i]).all()):
                broken_levels.add(t)
                break

    # Assert: at every certified level the next party count really can flip some prediction.
    assert broken_levels == set(cert.tolist()) - {-1}
    assert broken_levels


def test_certified_accuracy_on_a_hand_made_example() -> None:
    # Prepare
    pred = torch.tensor([0, 1, 2, 1, ABSTAIN])
    cert_t = torch.tensor([2, 0, 1, 3, -1])
    labels = torch.tensor([0, 1, 0, 1, 2])

    # Execute
    acc = certified_accuracy(pred, cert_t, labels, max_t=4)

    # Assert: correct are samples 0, 1 and 3, certified for 2, 0 and 3 parties.
    assert acc == {0: 0.6, 1: 0.4, 2: 0.4, 3: 0.2, 4: 0.0}


def test_certified_accuracy_rejects_mismatched_or_empty_inputs() -> None:
    # Prepare
    empty = torch.zeros(0, dtype=torch.int64)

    # Execute / Assert
    with pytest.raises(ValueError):
        certified_accuracy(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([0, 1]), max_t=1)
    with pytest.raises(ValueError):
        certified_accuracy(empty, empty, empty, max_t=1)
