"""The HTTP client's retry policy for idempotent calls: the backoff doubles up to a cap, the
default budget rides out a restart of the fusion center (tens of seconds, bounded), and a
connection the server drops before answering is retried like a refused one."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from clusterkit import free_ports
from copur_client import FusionClient, Unavailable

ANSWER = {
    "predictions": [
        {
            "sample_id": 7,
            "label": 1,
            "probabilities": [0.1, 0.9],
            "party_scores": [0.0, 0.0],
            "flagged_parties": [],
            "missing_parties": [],
            "defense": "copur",
            "certificate": None,
        }
    ]
}


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff sleeps of the HTTP client, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr("copur_client.retry.time.sleep", slept.append)
    return slept


class Flaky:
    """A raw HTTP server that drops the first ``drops`` connections after reading the request,
    then answers."""

    def __init__(self, drops: int) -> None:
        self.drops = drops
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.connections += 1
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                if self.connections <= self.drops:
                    continue  # closed without a word: the server died mid-call
                body = json.dumps(ANSWER).encode()
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    f"{len(body)}\r\n"
                )
                conn.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def flaky() -> Iterator[Flaky]:
    server = Flaky(drops=2)
    yield server
    server.close()


def test_the_backoff_doubles_up_to_its_cap(no_sleep: list[float]) -> None:
    # Prepare: a port nothing listens on
    url = f"http://127.0.0.1:{free_ports(1)[0]}"
    # Execute
    with (
        FusionClient(url, retries=6, backoff_s=1.0, max_backoff_s=4.0) as client,
        pytest.raises(Unavailable),
    ):
        client.predict([1])
    # Assert
    assert no_sleep == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert client.retry_budget_s == 19.0


def test_the_default_budget_rides_out_a_restart_and_is_bounded() -> None:
    # Execute
    with FusionClient("http://127.0.0.1:9") as client:
        budget = client.retry_budget_s
    # Assert: a fusion center restarts in 3-20 s on a busy 2-core machine (measured)
    assert 20.0 <= budget <= 60.0


def test_a_connection_dropped_before_the_answer_is_retried(
    flaky: Flaky, no_sleep: list[float]
) -> None:
    # Execute
    with FusionClient(flaky.url, retries=3, backoff_s=0.1) as client:
        preds = client.predict([7])
    # Assert
    assert [p.sample_id for p in preds] == [7]
    assert flaky.connections == 3 and no_sleep == [0.1, 0.2]


def test_dropped_connections_are_unavailable_once_the_retries_are_spent(
    flaky: Flaky, no_sleep: list[float]
) -> None:
    # Execute
    with (
        FusionClient(flaky.url, retries=1, backoff_s=0.1) as client,
        pytest.raises(Unavailable) as caught,
    ):
        client.predict([7])
    # Assert
    assert "connection lost" in str(caught.value) and flaky.connections == 2
