"""``copur rollout`` as an operator runs it, against a real local cluster: to a retrained bundle
and back with ``--rollback``, each walk printing its steps, the cluster serving the bundle it
names at the end; a bundle path that does not exist is one line and exit 2, nothing changed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clusterkit import running_cluster
from copur.science.bundle import read_manifest
from copur_client import FusionClient


def _rollout(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "copur", "rollout", *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_rollout_and_rollback_from_the_command_line(
    tmp_path: Path, mfeat_bundle_dir: Path, mfeat_next_bundle_dir: Path
) -> None:
    # Prepare
    old, new = (read_manifest(d).bundle_id for d in (mfeat_bundle_dir, mfeat_next_bundle_dir))
    with running_cluster(tmp_path, mfeat_bundle_dir) as cluster:
        url = cluster.fusion_url
        with FusionClient(url) as client:
            # Execute: a path that is no bundle, then the rollout, then the rollback
            refused = _rollout(url, str(tmp_path / "no-such-bundle"))
            after_refusal = client.bundles()
            rolled = _rollout(url, str(mfeat_next_bundle_dir))
            after_rollout = client.bundles()
            served = client.predict([1, 2, 3], defense="none")
            back = _rollout(url, "--rollback")
            after_rollback = client.bundles()
            served_back = client.predict([1, 2, 3], defense="none")

    # Assert: the refusal is one line naming the path, nothing changed
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "no-such-bundle" in refused.stderr
    assert after_refusal.active == old and [b.bundle_id for b in after_refusal.held] == [old]
    # the rollout: every step printed, every party and the fusion center on the new bundle only
    assert rolled.returncode == 0, rolled.stderr
    for step in range(1, 6):
        assert f"[{step}/5]" in rolled.stdout
    assert after_rollout.active == new and [b.bundle_id for b in after_rollout.held] == [new]
    assert all(p.bundles == [new] for p in after_rollout.parties)
    assert after_rollout.history[0].bundle_id == old
    assert {p.bundle_id for p in served} == {new} and not any(p.missing_parties for p in served)
    # the rollback: the old bundle everywhere again
    assert back.returncode == 0, back.stderr
    assert after_rollback.active == old and all(p.bundles == [old] for p in after_rollback.parties)
    assert {p.bundle_id for p in served_back} == {old}
