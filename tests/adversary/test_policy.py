import threading

import pytest
from pydantic import ValidationError

from copur.roles.adversary import Policy, PolicyState
from copur.roles.adversary.policy import policy_error
from copur.science.attacks import PGD, SIA, Flip, Mimic


def test_the_default_policy_is_no_attack() -> None:
    policy = Policy()

    assert (policy.attack, policy.params, policy.build(), policy.target) == ("none", {}, None, None)


def test_a_valid_policy_builds_its_attack_with_its_parameters() -> None:
    policy = Policy.model_validate_json('{"attack": "flip", "params": {"amp": 10}}')

    attack = policy.build()

    assert isinstance(attack, Flip) and attack.amp == 10.0


def test_target_is_stripped_from_the_attack_and_implies_targeted() -> None:
    policy = Policy(attack="pgd", params={"target": 3, "steps": 5})

    attack = policy.build()

    assert isinstance(attack, PGD) and attack.targeted and attack.steps == 5
    assert policy.target == 3


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"attack": "melt"}, "melt"),
        ({"attack": "flip", "params": {"power": 3}}, "power"),
        ({"attack": "flip", "params": {"amp": True}}, "amp"),
        ({"attack": "pgd", "params": {"steps": 2.5}}, "steps"),
        ({"attack": "pgd", "params": {"steps": 0}}, "steps"),
        ({"attack": "pgd", "params": {"eps": -1.0}}, "eps"),
        ({"attack": "pgd", "params": {"targeted": True}}, "target"),
        ({"attack": "pgd", "params": {"target": 2, "targeted": False}}, "target"),
        ({"attack": "noise", "params": {"target": 2}}, "target"),
        ({"attack": "none", "params": {"amp": 1}}, "amp"),
        ({"attack": "flip", "colour": "red"}, "colour"),
        ({"attack": "mimic", "params": {"donor": 3, "search": 4}}, "search"),
        ({"attack": "mimic", "params": {"donor_class": 3, "nearest": True}}, "nearest"),
        ({"attack": "mimic", "params": {}}, "donor_class"),
        ({"attack": "mimic", "params": {"donor": 3, "donor_class": 1}}, "donor_class"),
        ({"attack": "mimic", "params": {"donor": -1}}, "donor"),
        ({"attack": "mimic", "params": {"donor": 2.5}}, "donor"),
        ({"attack": "mimic", "params": {"donor_class": -2}}, "donor_class"),
        ({"attack": "mimic", "params": {"donor": 3, "factor": 0}}, "factor"),
        ({"attack": "mimic", "params": {"donor": 3, "target": 1}}, "target"),
        ({"attack": "sia", "params": {"search": 1000}}, "search"),
        ({"attack": "sia", "params": {"steps": -1}}, "steps"),
        ({"attack": "sia", "params": {"donor": 3}}, "donor"),
    ],
)
def test_a_refused_policy_names_what_is_wrong_in_one_line(payload: dict, named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Policy.model_validate(payload)

    message = policy_error(caught.value.errors())
    assert named in message
    assert "\n" not in message


def test_mimic_names_a_donor_sample_which_the_attack_itself_does_not_get() -> None:
    by_id = Policy.model_validate_json(
        '{"attack": "mimic", "params": {"donor": 1014, "factor": 0.5}}'
    )
    by_class = Policy(attack="mimic", params={"donor_class": 5})

    attacks = by_id.build(), by_class.build()

    assert (by_id.donor, by_id.donor_class, by_class.donor, by_class.donor_class) == (
        1014,
        None,
        None,
        5,
    )
    assert all(isinstance(a, Mimic) and a.donor is None and a.donor_class is None for a in attacks)
    assert isinstance(attacks[0], Mimic) and attacks[0].factor == 0.5 and attacks[0].search == 0
    assert Policy(attack="mimic", params={"donor": 1, "search": 0, "nearest": False}).donor == 1


def test_sia_takes_its_search_and_optional_gradient_steps() -> None:
    default, tuned = (
        Policy(attack="sia"),
        Policy(attack="sia", params={"search": 8, "steps": 0, "factor": 1.5}),
    )

    assert isinstance(default.build(), SIA) and default.donor is None
    attack = tuned.build()
    assert isinstance(attack, SIA) and (attack.search, attack.steps, attack.factor) == (8, 0, 1.5)


def test_a_live_only_refusal_says_why_in_one_line() -> None:
    with pytest.raises(ValidationError) as caught:
        Policy(attack="mimic", params={"donor": 3, "search": 4})

    assert policy_error(caught.value.errors()) == (
        "params: parameter 'search' of attack 'mimic' needs the fusion center's answers, which the "
        "live "
        "adversary does not see (use 0), got 4"
    )


def test_policy_state_swaps_atomically_and_counts_every_call() -> None:
    state = PolicyState()
    flip = Policy(attack="flip")

    previous = state.set(flip)
    workers = [
        threading.Thread(target=lambda: [state.record(corrupted=i % 2 == 0) for i in range(500)])
        for _ in range(8)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    snap = state.snapshot()
    assert previous == Policy() and state.get() is flip
    assert (snap.policy, snap.calls, snap.corrupted) == (flip, 4000, 2000)
