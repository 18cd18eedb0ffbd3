"""The `make demo` walk-through: bring the cluster up, predict over HTTP, flip one party through the
adversary, predict again with `none` and `copur`, print the accuracies, shut down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from copur.errors import CopurError
from copur.operations.launcher import Cluster
from copur.science.bundle import Bundle, load_bundle
from copur.science.data import load_dataset
from copur.transport.topology import load_topology

__all__ = ["demo_samples", "demo_steps", "run_demo"]


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
    ids, labels = demo_samples(bundle, samples)
    party = topology.adversaries[0].party
    cluster = Cluster(topology, config_path=config, log_dir=log_dir)
    say(f"starting {len(cluster.procs)} processes: {', '.join(cluster.procs)}")
    cluster.start()
    fusion = FusionClient(
        cluster.fusion_url,
        timeout=120,
        retries=0,
        api_key=cluster.dev_key("predict"),
        ca_file=cluster.http_ca,
    )
    control = AdversaryControl(
        cluster.control_url(party), api_key=cluster.dev_key("admin"), ca_file=cluster.http_ca
    )
    try:
        say(
            f"cluster ready: fusion {cluster.fusion_url}, adversary control "
            f"{cluster.control_url(party)}"
        )
        demo_steps(
            fusion,
            control,
            ids=ids,
            labels=labels,
            party=party,
            party_name=manifest.party_names[party],
            say=say,
        )
    except CopurClientError as exc:
        raise CopurError(str(exc)) from None
    finally:
        fusion.close()
        control.close()
        cluster.stop()
        say("cluster stopped")


def demo_samples(bundle: Bundle, samples: int) -> tuple[list[int], np.ndarray]:
    """``samples`` test ids of ``bundle`` (a fixed draw, sorted) and their true labels."""
    data = load_dataset(bundle.manifest.dataset_spec)
    split = np.sort(np.random.default_rng(0).permutation(bundle.test_ids)[:samples])
    return [int(i) for i in split], data.labels[split]


def demo_steps(
    fusion: Any,
    control: Any,
    *,
    ids: list[int],
    labels: np.ndarray,
    party: int,
    party_name: str,
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """The demo's calls against a running cluster: three predictions shown, the accuracy of
    ``none`` and ``copur`` on ``ids`` with honest parties, the adversary in front of ``party``
    switched to ``flip`` x10 through ``control``, both accuracies again. Returns the four
    accuracies by ``"honest/none"``, ``"attacked/copur"``, ... The policy is left as set."""
    accuracies: dict[str, float] = {}
    for p in fusion.predict_json(ids[:3], defense="copur")["predictions"]:
        say(
            f"  sample {p['sample_id']}: label {p['label']} (p={max(p['probabilities']):.3f}), "
            f"party scores {[round(s, 2) for s in p['party_scores']]}"
        )
    for defense in ("none", "copur"):
        acc, _ = _accuracy(fusion, ids, labels, defense)
        accuracies[f"honest/{defense}"] = acc
        say(f"honest parties, {len(ids)} test samples: accuracy {acc:.3f} with defense={defense}")
    control.set_policy("flip", amp=10)
    say(f"adversary in front of party {party} ({party_name}) now flips its embeddings x10")
    for defense in ("none", "copur"):
        acc, preds = _accuracy(fusion, ids, labels, defense)
        accuracies[f"attacked/{defense}"] = acc
        flagged = np.mean([party in p["flagged_parties"] for p in preds])
        extra = f", party {party} flagged on {flagged:.0%} of samples" if defense == "copur" else ""
        say(
            f"under attack, {len(ids)} test samples:    accuracy {acc:.3f} with "
            f"defense={defense}{extra}"
        )
    return accuracies
