"""Every test here may launch a cluster: mTLS (the topology default) with the session's key
pairs."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module", autouse=True)
def _cluster_certs(cluster_tls: Path) -> Path:
    return cluster_tls
