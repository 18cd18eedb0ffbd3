"""The `make demo` walk-through: bring the cluster up, predict over HTTP, flip one party through the
adversary, predict again with `none` and `copur`, print the accuracies, shut down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from copur.errors import CopurError
from copur.operations.launcher import Cluster
from copur.science.bundle import load_bundle
from copur.science.data import load_dataset
from copur.transport.topology import load_topology

__all__ = ["run_demo"]


def _accuracy(
    client: Any, ids: list[int], labels: np.ndarray, defense: str
) -> tuple[float, list[dict]]:
    preds = client.predict_json(ids, defense=defense)["predictions"]
    return float(np.mean([p["label"] for p in preds] == labels)), preds


def run_demo(
    config: str | Path, *, log_dir: Path, samples: int = 200, say: Callable[[str], None] = print
) -> None:
    """Start the cluster of ``config``, predict, flip one party, predict again, stop. The calls
    carry the development keys beside the topology's keys file (``copur keys init``), else
    ``$COPUR_API_KEY`` / ``$COPUR_ADMIN_KEY``; a refused call is a one-line CopurError."""
    from copur_client import AdversaryControl, CopurClientError, FusionClient

    topology = load_topology(config)
    if not topology.adversaries:
        raise SystemExit(f"{config} puts no party behind an adversary; the demo needs one")
    bundle = load_bundle(topology.bundle)
    manifest = bundle.manifest
    data = load_dataset(manifest.dataset_spec)
    split = np.sort(np.random.default_rng(0).permutation(bundle.test_ids)[:samples])
    ids, labels = [int(i) for i in split], data.labels[split]
    party = topology.adversaries[0].party
    cluster = Cluster(topology, config_path=config, log_dir=log_dir)
    say(f"starting {len(cluster.procs)} processes: {', '.join(cluster.procs)}")
    cluster.start()
    fusion = FusionClient(
        cluster.fusion_url, timeout=120, retries=0, api_key=cluster.dev_key("predict")
    )
    control = AdversaryControl(cluster.control_url(party), api_key=cluster.dev_key("admin"))
    try:
        say(
            f"cluster ready: fusion {cluster.fusion_url}, adversary control "
            f"{cluster.control_url(party)}"
        )
        for p in fusion.predict_json(ids[:3], defense="copur")["predictions"]:
            say(
                f"  sample {p['sample_id']}: label {p['label']} (p={max(p['probabilities']):.3f}), "
                f"party scores {[round(s, 2) for s in p['party_scores']]}"
            )
        for defense in ("none", "copur"):
            acc, _ = _accuracy(fusion, ids, labels, defense)
            say(
                f"honest parties, {len(ids)} test samples: accuracy {acc:.3f} with "
                f"defense={defense}"
            )
        control.set_policy("flip", amp=10)
        say(
            f"adversary in front of party {party} ({manifest.party_names[party]}) now flips its "
            "embeddings x10"
        )
        for defense in ("none", "copur"):
            acc, preds = _accuracy(fusion, ids, labels, defense)
            flagged = np.mean([party in p["flagged_parties"] for p in preds])
            extra = (
                f", party {party} flagged on {flagged:.0%} of samples" if defense == "copur" else ""
            )
            say(
                f"under attack, {len(ids)} test samples:    accuracy {acc:.3f} with "
                f"defense={defense}{extra}"
            )
    except CopurClientError as exc:
        raise CopurError(str(exc)) from None
    finally:
        fusion.close()
        control.close()
        cluster.stop()
        say("cluster stopped")
