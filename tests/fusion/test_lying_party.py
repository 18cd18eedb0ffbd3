"""A party that answers garbage, in front of a real fusion handler: five honest parties (real
party servers) and one fake party server on a real port whose answers are crafted per test.
Every kind of garbage is a missing block: the answer is 200 with that party in
``missing_parties``, identical to a run where the party is down, the other parties' blocks
reach the defense unchanged, and no NaN/Inf/absurd value ever reaches the defense (a spy on
the worker checks every batch). Lies the protocol cannot see (rows of other ids, in another
order) reach the defense as a valid block, which the purifier flags."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from copur.roles.fusion.metrics import MISSING_REASONS
from copur.science.bundle import Bundle
from copur_client.v1 import party_pb2, tensor_pb2
from liarkit import LIAR, Answer, Craft, Fusion, LyingParty, M, answer, lying_cluster

IDS = list(range(0, 2000, 50))  # 40 samples spread over the data set
BAD_ROWS = [0, 7, 39]  # positions in IDS of the rows the per-row kinds spoil


# -- crafted answers
# -----------------------------------------------------------------------------------------
def raw(
    data: bytes, shape: tuple[int, ...] | list[int], dtype: str = "float32"
) -> party_pb2.EmbedResponse:
    """An answer whose tensor fields are exactly these (nothing checked on the way out)."""
    return party_pb2.EmbedResponse(
        embeddings=tensor_pb2.Tensor(data=data, shape=list(shape), dtype=dtype), party=LIAR
    )


def spoil_rows(value: float) -> Craft:
    """The honest block with the rows at BAD_ROWS set to ``value``."""

    def craft(block: np.ndarray) -> party_pb2.EmbedResponse:
        out = block.copy()
        out[BAD_ROWS] = value
        return answer(out)

    return craft


def quantised(block: np.ndarray) -> np.ndarray:
    """8-bit codes 0..255 of the block (non-negative integers: read as float32, every one is
    subnormal)."""
    return np.clip(np.round(block * 127) + 128, 0, 255)


F32_MAX = float(np.finfo(np.float32).max)
GARBAGE: dict[str, Craft] = {
    # shape
    "one row short": lambda b: answer(b[:-1]),
    "one row too many": lambda b: answer(np.vstack([b, b[:1]])),
    "no rows": lambda b: answer(b[:0]),
    "narrower": lambda b: answer(b[:, :-1]),
    "wider": lambda b: answer(np.hstack([b, b[:, :1]])),
    "flat": lambda b: answer(b.reshape(-1)),
    "3-d": lambda b: answer(b[None]),
    "transposed": lambda b: answer(np.ascontiguousarray(b.T)),
    "empty message": lambda b: party_pb2.EmbedResponse(party=LIAR),
    # values
    "all NaN": lambda b: answer(np.full_like(b, np.nan)),
    "all +Inf": lambda b: answer(np.full_like(b, np.inf)),
    "all -Inf": lambda b: answer(np.full_like(b, -np.inf)),
    "huge norm": lambda b: answer(b * 1e6),
    "float32 max": lambda b: answer(np.full_like(b, F32_MAX)),
    # dtype
    "float64 declared": lambda b: raw(b.astype("<f8").tobytes(), b.shape, "float64"),
    "float64 bytes declared float32": lambda b: raw(b.astype("<f8").tobytes(), b.shape),
    "float16 bytes declared float32": lambda b: raw(b.astype("<f2").tobytes(), b.shape),
    "int32 bytes declared float32": lambda b: raw(
        np.round(b * 1000).astype("<i4").tobytes(), b.shape
    ),
    "8-bit codes as int32 declared float32": lambda b: raw(
        quantised(b).astype("<i4").tobytes(), b.shape
    ),
    "int64 bytes declared float32": lambda b: raw(
        np.round(b * 1000).astype("<i8").tobytes(), b.shape
    ),
    "big-endian float32": lambda b: raw(b.astype(">f4").tobytes(), b.shape),
    "dtype spelled f4": lambda b: raw(b.astype("<f4").tobytes(), b.shape, "f4"),
    "dtype empty": lambda b: raw(b.astype("<f4").tobytes(), b.shape, ""),
    # bytes and dims
    "truncated by 3 bytes": lambda b: raw(b.astype("<f4").tobytes()[:-3], b.shape),
    "truncated by a row": lambda b: raw(b.astype("<f4").tobytes()[: -4 * b.shape[1]], b.shape),
    "3 bytes too many": lambda b: raw(b.astype("<f4").tobytes() + b"\x00\x00\x00", b.shape),
    "negative dim": lambda b: raw(b"", [-1, b.shape[1]]),
    "dims whose int64 product wraps to 0": lambda b: raw(b"", [2**32, 2**32]),
    "empty with absurd extent": lambda b: raw(b"", [0, 2**62, 2**62]),
    # identity
    "another party's answer": lambda b: answer(b, party=LIAR + 1),
}
ROW_GARBAGE: dict[str, Craft] = {
    "NaN in some rows": spoil_rows(np.nan),
    "Inf in some rows": spoil_rows(np.inf),
    "huge values in some rows": spoil_rows(1e12),
    "subnormal values in some rows": spoil_rows(1e-40),
}
UNSEEN_LIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "rows in reverse order": lambda b: b[::-1],
    "rows of other ids": lambda b: np.roll(b, 7, axis=0),
}


# -- the fake party and the fusion center (liarkit)
# --------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(mfeat_bundle_dir: Path, mfeat_bundle: Bundle) -> Iterator[tuple[Fusion, LyingParty]]:
    """The five honest parties, the liar (honest for now) and the fusion center over them."""
    with lying_cluster(mfeat_bundle_dir, mfeat_bundle) as running:
        yield running


@pytest.fixture(scope="module")
def references(cluster: tuple[Fusion, LyingParty]) -> dict[str, Answer]:
    """The honest run and the run with the liar down (what every garbage answer must look like)."""
    fusion, fake = cluster
    fake.craft = answer
    honest = fusion.predict(IDS)
    fake.craft = None
    down = fusion.predict(IDS)
    fake.craft = answer
    assert honest.status == 200 and down.status == 200
    assert all(p["missing_parties"] == [] for p in honest.predictions)
    assert all(p["missing_parties"] == [LIAR] for p in down.predictions)
    return {"honest": honest, "down": down}


# -- checks
# --------------------------------------------------------------------------------------------------
def _block(h: np.ndarray, party: int) -> np.ndarray:
    e = h.shape[1] // M
    return h[:, party * e : (party + 1) * e]


def assert_sane_defense_input(fusion: Fusion, got: Answer) -> None:
    """Nothing non-finite, subnormal or above a party's norm bound reached the defense;
    unobserved is zero."""
    assert got.h.dtype == np.float32 and np.isfinite(got.h).all()
    assert not ((got.h != 0) & (np.abs(got.h) < np.finfo(np.float32).tiny)).any()
    assert fusion.handler.pool is not None
    for i, bound in enumerate(fusion.handler.bundles.active.max_norms):
        block = _block(got.h, i)
        assert (np.linalg.norm(block, axis=1) <= bound).all()
        assert (block[~got.observed[:, i]] == 0).all()


def assert_same_predictions(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [p["sample_id"] for p in got] == [p["sample_id"] for p in want]
    for key in ("label", "flagged_parties", "missing_parties"):
        assert [p[key] for p in got] == [p[key] for p in want], key
    for key in ("probabilities", "party_scores"):
        np.testing.assert_allclose(
            [p[key] for p in got], [p[key] for p in want], atol=1e-5, err_msg=key
        )


def _run(cluster: tuple[Fusion, LyingParty], craft: Craft) -> Answer:
    fusion, fake = cluster
    fake.craft = craft
    try:
        return fusion.predict(IDS)
    finally:
        fake.craft = answer


# -- tests
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(GARBAGE))
def test_a_garbage_answer_is_a_missing_block(
    cluster: tuple[Fusion, LyingParty], references: dict[str, Answer], kind: str
) -> None:
    # Prepare
    fusion, _ = cluster
    honest, down = references["honest"], references["down"]
    # Execute
    got = _run(cluster, GARBAGE[kind])
    # Assert: 200, the liar missing in every answer, exactly as if it were down
    assert got.status == 200
    assert all(p["missing_parties"] == [LIAR] for p in got.predictions)
    assert_same_predictions(got.predictions, down.predictions)
    assert_sane_defense_input(fusion, got)
    assert (
        not got.observed[:, LIAR].any()
        and got.observed[:, [i for i in range(M) if i != LIAR]].all()
    )
    for i in range(M):
        expected = np.zeros_like(_block(honest.h, i)) if i == LIAR else _block(honest.h, i)
        np.testing.assert_array_equal(_block(got.h, i), expected)


@pytest.mark.parametrize("kind", list(ROW_GARBAGE))
def test_garbage_rows_are_missing_rows(
    cluster: tuple[Fusion, LyingParty], references: dict[str, Answer], kind: str
) -> None:
    # Prepare
    fusion, _ = cluster
    honest, down = references["honest"], references["down"]
    good = [r for r in range(len(IDS)) if r not in BAD_ROWS]
    # Execute
    got = _run(cluster, ROW_GARBAGE[kind])
    # Assert: the spoiled rows are missing the liar's block (as if it were down), the others are
    # untouched
    assert got.status == 200
    assert [p["missing_parties"] for p in got.predictions] == [
        [LIAR] if r in BAD_ROWS else [] for r in range(40)
    ]
    assert_same_predictions(
        [got.predictions[r] for r in BAD_ROWS], [down.predictions[r] for r in BAD_ROWS]
    )
    assert_same_predictions(
        [got.predictions[r] for r in good], [honest.predictions[r] for r in good]
    )
    assert_sane_defense_input(fusion, got)
    np.testing.assert_array_equal(
        got.observed[:, LIAR], [r not in BAD_ROWS for r in range(len(IDS))]
    )
    np.testing.assert_array_equal(got.h[good], honest.h[good])


@pytest.mark.parametrize("kind", list(UNSEEN_LIES))
def test_valid_looking_rows_of_other_samples_are_flagged(
    cluster: tuple[Fusion, LyingParty], references: dict[str, Answer], kind: str
) -> None:
    # Prepare
    fusion, _ = cluster
    honest = references["honest"]
    lie = UNSEEN_LIES[kind]
    # Execute
    got = _run(cluster, lambda b: answer(np.ascontiguousarray(lie(b))))
    # Assert: observed (the protocol carries no ids to check), never NaN; the purifier outvotes the
    # lie
    # (labels as in the honest run; measured: all 40) and flags many of the rows (measured: 40-50 %)
    assert got.status == 200
    assert all(p["missing_parties"] == [] for p in got.predictions)
    assert_sane_defense_input(fusion, got)
    flagged = np.mean([LIAR in p["flagged_parties"] for p in got.predictions])
    assert flagged >= 0.25, flagged
    honest_labels = np.array([p["label"] for p in honest.predictions])
    labels = np.array([p["label"] for p in got.predictions])
    assert np.mean(labels == honest_labels) >= 0.9
    for i in range(M):
        if i != LIAR:
            np.testing.assert_array_equal(_block(got.h, i), _block(honest.h, i))


def _counted(fusion: Fusion, series: str, party: int | None = None) -> float:
    """A series' value in the fusion center's registry (a party's child, with ``party``; the
    missing samples summed over their reasons)."""
    labels = {} if party is None else {"party": str(party)}
    get = fusion.handler.metrics.registry.get_sample_value
    if series == "copur_party_missing_samples_total":
        found = [get(series, labels | {"reason": r}) for r in MISSING_REASONS]
        assert all(v is not None for v in found), (series, labels)
        return sum(v or 0.0 for v in found)
    value = get(series, labels)
    assert value is not None, (series, labels)
    return value


def _per_party(fusion: Fusion, series: str) -> list[float]:
    return [_counted(fusion, series, i) for i in range(M)]


def test_the_liar_is_counted_in_the_party_failures(cluster: tuple[Fusion, LyingParty]) -> None:
    # Prepare
    fusion, _ = cluster
    missing_before = _per_party(fusion, "copur_party_missing_samples_total")
    # Execute
    _run(cluster, GARBAGE["all NaN"])
    parties = fusion.call(fusion.client.get("/v1/parties")).json()["parties"]
    metrics = fusion.call(fusion.client.get("/metrics")).text
    missing = _per_party(fusion, "copur_party_missing_samples_total")
    # Assert
    assert (
        parties[LIAR]["failures"] >= 1
        and "non-finite values in 40 of 40 rows" in parties[LIAR]["last_error"]
    )
    assert f'copur_party_failures_total{{party="{LIAR}",reason="invalid"}}' in metrics
    # one failed call, but every one of its samples missing; nobody else's
    assert [m - b for m, b in zip(missing, missing_before, strict=True)] == [
        float(len(IDS)) if i == LIAR else 0.0 for i in range(M)
    ]
    assert f'copur_party_missing_samples_total{{party="{LIAR}",reason="invalid"}}' in metrics
    assert f'copur_party_up{{party="{LIAR}"}}' in metrics


def test_flagged_samples_are_counted_per_party_against_the_samples_fetched(
    cluster: tuple[Fusion, LyingParty],
) -> None:
    # Prepare: a lie the protocol cannot see (rows of other ids), which the purifier flags
    fusion, _ = cluster
    flags_before = _per_party(fusion, "copur_party_flags_total")
    samples_before = _counted(fusion, "copur_batch_samples_sum")
    # Execute
    got = _run(cluster, lambda b: answer(np.ascontiguousarray(UNSEEN_LIES["rows of other ids"](b))))
    # Assert: each party's counter grew by the answers that flagged it; the samples by the batch
    flags = _per_party(fusion, "copur_party_flags_total")
    flagged = [sum(i in p["flagged_parties"] for p in got.predictions) for i in range(M)]
    assert got.status == 200
    assert [f - b for f, b in zip(flags, flags_before, strict=True)] == [float(n) for n in flagged]
    assert flagged[LIAR] >= 0.25 * len(IDS)
    assert _counted(fusion, "copur_batch_samples_sum") - samples_before == len(IDS)


def test_an_unexpected_failure_is_counted_as_the_500_it_becomes(
    cluster: tuple[Fusion, LyingParty], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a bug inside the handler (not a domain error)
    fusion, _ = cluster

    async def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(fusion.handler, "predict", broken)
    labels = {"defense": "copur", "status": "500", "transport": "http"}

    def count() -> float:
        registry = fusion.handler.metrics.registry
        return registry.get_sample_value("copur_requests_total", labels) or 0.0

    before = count()

    # Execute: the ASGI transport hands the app's exception to the caller
    with pytest.raises(RuntimeError, match="a bug"):
        fusion.predict(IDS[:2])

    # Assert: the error-rate alert's series saw it
    assert count() - before == 1.0
