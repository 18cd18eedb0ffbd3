"""Inference under attack through the Open Inference Protocol: five honest parties and one liar
(a party server whose answers are rewritten per test) in front of a real fusion handler, asked
through ``/v1/predict`` and ``POST /v2/models/copur/infer`` alike. The v2 ``flagged`` output
shows the liar the defense caught, ``missing`` the party that did not answer, and labels,
flags and missing parties are those of /v1 for the same ids."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from copur.science.bundle import Bundle
from liarkit import LIAR, Fusion, Lie, LyingParty, M, answer, lying, lying_cluster

IDS = list(range(0, 2000, 50))  # 40 samples spread over the data set


@pytest.fixture(scope="module")
def cluster(mfeat_bundle_dir: Path, mfeat_bundle: Bundle) -> Iterator[tuple[Fusion, LyingParty]]:
    """The five honest parties, the liar (honest for now) and the fusion center over them."""
    with lying_cluster(mfeat_bundle_dir, mfeat_bundle) as running:
        yield running


def _both(fusion: Fusion) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """/v1's predictions and /v2's outputs (JSON) for IDS with the copur defense."""
    v1 = fusion.post("/v1/predict", {"sample_ids": IDS, "defense": "copur"})
    v2 = fusion.post(
        "/v2/models/copur/infer",
        {
            "parameters": {"defense": "copur"},
            "inputs": [
                {"name": "sample_ids", "datatype": "INT64", "shape": [len(IDS)], "data": IDS}
            ],
        },
    )
    assert v1.status_code == 200 and v2.status_code == 200, (v1.text, v2.text)
    outputs = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in v2.json()["outputs"]}
    return v1.json()["predictions"], outputs


def _masks(predictions: list[dict[str, Any]], key: str) -> np.ndarray:
    out = np.zeros((len(predictions), M), dtype=bool)
    for row, p in enumerate(predictions):
        out[row, p[key]] = True
    return out


LIES: dict[str, Lie] = {
    "flipped and scaled": lambda block: -3.0 * block,
    "rows of other ids": lambda block: np.roll(block, 7, axis=0),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_v2_flags_the_liar_and_agrees_with_v1(cluster: tuple[Fusion, LyingParty], lie: str) -> None:
    # Prepare
    fusion, liar = cluster
    liar.craft = answer
    _, honest = _both(fusion)
    liar.craft = lying(LIES[lie])
    # Execute
    try:
        v1, v2 = _both(fusion)
    finally:
        liar.craft = answer
    # Assert: /v1 and /v2 say the same; the liar is flagged in (nearly) every row and the honest
    # parties in (nearly) none, nobody is missing (the lies are well formed), and the labels
    # survive the lie (measured for both lies: the liar flagged in 40 of 40 rows, no honest party
    # flagged, every label the honest run's)
    assert v2["label"].tolist() == [p["label"] for p in v1]
    np.testing.assert_array_equal(v2["flagged"], _masks(v1, "flagged_parties"))
    np.testing.assert_array_equal(v2["missing"], _masks(v1, "missing_parties"))
    np.testing.assert_allclose(v2["probabilities"], [p["probabilities"] for p in v1], atol=1e-6)
    per_party = v2["flagged"].mean(axis=0)
    assert per_party[LIAR] >= 0.9 and np.delete(per_party, LIAR).max() <= 0.1, per_party
    assert not v2["missing"].any()
    assert np.mean(v2["label"] == honest["label"]) >= 0.9


def test_v2_shows_a_silent_party_as_missing(cluster: tuple[Fusion, LyingParty]) -> None:
    # Prepare
    fusion, liar = cluster
    liar.craft = None
    # Execute
    try:
        v1, v2 = _both(fusion)
    finally:
        liar.craft = answer
    # Assert
    assert v2["missing"][:, LIAR].all() and v2["missing"].sum() == len(IDS)
    np.testing.assert_array_equal(v2["missing"], _masks(v1, "missing_parties"))
    assert v2["label"].tolist() == [p["label"] for p in v1]
