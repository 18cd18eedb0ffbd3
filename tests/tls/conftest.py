"""Two unrelated CAs with key pairs: the cluster's, and a stranger's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tls.support import make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("tls-ours"))


@pytest.fixture(scope="session")
def foreign_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same service names, another CA: what an outsider could mint for itself."""
    return make_certs(tmp_path_factory.mktemp("tls-foreign"))
