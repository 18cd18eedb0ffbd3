import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from adversary.support import PARTY, Clean, E, embed
from copur.errors import CopurError
from copur.roles.adversary import AdversaryApp, Policy, serve_adversary
from copur.roles.adversary.proxy import DROP_DETAILS
from copur_client import serde
from copur_client.v1 import party_pb2, party_pb2_grpc

IDS = list(range(40))


def _put(control: httpx.Client, attack: str, **params: object) -> httpx.Response:
    return control.put("/v1/policy", json={"attack": attack, "params": params})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_attack_passes_the_embeddings_through_bit_exactly(stub, clean: Clean) -> None:
    out = embed(stub, IDS)

    assert out.tobytes() == clean.table[IDS].tobytes()


def test_flip_switched_live_answers_minus_amp_times_the_block(stub, control, clean: Clean) -> None:
    before = embed(stub, IDS)

    put = _put(control, "flip", amp=10)
    after = embed(stub, IDS)

    assert put.status_code == 200, put.text
    assert put.json()["attack"] == "flip" and put.json()["params"] == {"amp": 10}
    assert np.array_equal(before, clean.table[IDS])
    np.testing.assert_allclose(after, -10 * clean.table[IDS], rtol=1e-6)


def test_noise_answers_rows_of_the_set_norm(stub, control, clean: Clean) -> None:
    _put(control, "noise", norm=7)

    out = embed(stub, IDS)

    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 7.0, rtol=1e-5)
    assert not np.allclose(out, clean.table[IDS])


def test_zero_answers_zeros(stub, control) -> None:
    _put(control, "zero")

    out = embed(stub, IDS)

    assert out.shape == (len(IDS), E) and not out.any()


def test_drop_answers_unavailable(stub, control) -> None:
    _put(control, "drop")

    with pytest.raises(grpc.RpcError) as caught:
        embed(stub, IDS)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == DROP_DETAILS


def test_replace_answers_rows_of_other_samples(stub, control, clean: Clean) -> None:
    embed(stub, IDS)  # seen clean: the adversary's memory
    _put(control, "replace")

    out = embed(stub, list(range(60, 80)))

    same = (out[:, None, :] == clean.table[None, :, :]).all(axis=2)
    assert same.any(axis=1).all()
    assert set(np.nonzero(same)[1].tolist()) <= set(IDS)


def test_untargeted_pgd_changes_the_heads_prediction(stub, control, clean: Clean, head) -> None:
    _put(control, "pgd")

    out = embed(stub, IDS)

    assert not np.allclose(out, clean.table[IDS])
    changed = head(clean.assemble(out)) != head(clean.assemble(clean.table[IDS]))
    assert float(changed.float().mean()) > 0.5


def test_embed_features_is_forwarded_and_corrupted(stub, control) -> None:
    x = np.arange(3 * 20, dtype=np.float32).reshape(3, 20)
    _put(control, "flip", amp=2)

    msg = stub.EmbedFeatures(
        party_pb2.EmbedFeaturesRequest(features=serde.array_to_proto(x)), timeout=30
    )

    block, party = serde.embed_response_from_proto(msg)
    assert party == PARTY
    np.testing.assert_allclose(block, -2 * 0.5 * x[:, :E], rtol=1e-6)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"attack": "melt"}, "melt"),
        ({"attack": "flip", "params": {"power": 3}}, "power"),
        ({"attack": "pgd", "params": {"target": 10}}, "target"),
        ({"attack": "noise", "params": {"norm": "loud"}}, "norm"),
    ],
)
def test_a_refused_policy_is_a_one_line_422_and_changes_nothing(
    control, body: dict, named: str
) -> None:
    _put(control, "flip", amp=3)

    put = control.put("/v1/policy", json=body)
    get = control.get("/v1/policy")

    assert put.status_code == 422
    detail = put.json()["detail"]
    assert isinstance(detail, str) and named in detail and "\n" not in detail
    assert (get.json()["attack"], get.json()["params"]) == ("flip", {"amp": 3})


def test_a_policy_change_logs_one_key_value_line(control, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="copur.roles.adversary"):
        _put(control, "flip", amp=4)

    lines = [r.getMessage() for r in caplog.records if "event=policy_change" in r.getMessage()]
    assert len(lines) == 1
    assert 'attack=flip params={"amp":4.0} previous=none party=2' in lines[0]


def test_get_shows_the_policy_the_party_and_the_counts(stub, control) -> None:
    embed(stub, IDS)
    embed(stub, IDS)
    _put(control, "zero")
    embed(stub, IDS)

    got = control.get("/v1/policy").json()

    assert got == {
        "attack": "zero",
        "params": {},
        "party": PARTY,
        "calls": 3,
        "corrupted": 1,
        "donors": [],
    }


def test_upstream_not_found_passes_through(stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        embed(stub, [5, 9999])

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "9999" in caught.value.details()


def test_info_is_forwarded(stub) -> None:
    info = serde.party_info_from_proto(stub.Info(party_pb2.InfoRequest(), timeout=30))

    assert (info.index, info.emb_dim, info.num_parties) == (PARTY, E, 6)


def test_health_serves_and_reflection_lists_the_services(channel) -> None:
    status = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=30
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([request]), timeout=30
    )

    names = {s.name for a in answers for s in a.list_services_response.service}
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert {"copur.v1.PartyService", "grpc.health.v1.Health"} <= names


def test_probes_docs_and_metrics(stub, control) -> None:
    _put(control, "flip")
    embed(stub, IDS)

    metrics = control.get("/metrics")

    assert control.get("/healthz").status_code == 200
    assert control.get("/readyz").json() == {"status": "ready"}
    assert control.get("/docs").status_code == 200
    assert "/v1/policy" in control.get("/openapi.json").json()["paths"]
    assert 'copur_adversary_corrupted_total{attack="flip"} 1.0' in metrics.text
    assert 'copur_adversary_calls_total{method="Embed"} 1.0' in metrics.text


def test_without_upstream_it_is_not_ready_and_passes_unavailable_through(
    mfeat_bundle_dir: Path,
) -> None:
    app = AdversaryApp(
        upstream=f"127.0.0.1:{_free_port()}", bundle=mfeat_bundle_dir, upstream_timeout_s=2
    )
    app.start()
    try:
        ready = httpx.get(f"http://127.0.0.1:{app.control_port}/readyz", timeout=30)
        with (
            grpc.insecure_channel(f"127.0.0.1:{app.port}") as ch,
            pytest.raises(grpc.RpcError) as caught,
        ):
            embed(party_pb2_grpc.PartyServiceStub(ch), IDS)
    finally:
        app.stop()

    assert ready.status_code == 503 and "Info" in ready.json()["reason"]
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert app.party is None


def test_a_configured_party_that_upstream_contradicts_is_not_ready(
    upstream: str, mfeat_bundle_dir: Path
) -> None:
    app = AdversaryApp(upstream=upstream, bundle=mfeat_bundle_dir, party=PARTY + 1)
    app.start()
    try:
        ready = httpx.get(f"http://127.0.0.1:{app.control_port}/readyz", timeout=30)
    finally:
        app.stop()

    assert (
        ready.status_code == 503 and f"configured for party {PARTY + 1}" in ready.json()["reason"]
    )


def test_stop_ends_wait_and_closes_the_ports(upstream: str, mfeat_bundle_dir: Path) -> None:
    app = AdversaryApp(upstream=upstream, bundle=mfeat_bundle_dir, policy=Policy(attack="zero"))
    app.start()
    port = app.control_port

    app.stop()
    app.stop()

    assert app.wait(timeout=5)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_serve_adversary_stops_on_sigterm(upstream: str, mfeat_bundle_dir: Path) -> None:
    control_port = _free_port()
    seen: list[int] = []
    returned = threading.Event()  # serve_adversary failed early: send no signal to the test run

    def _terminate_when_up() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not returned.is_set():
            try:
                seen.append(
                    httpx.get(f"http://127.0.0.1:{control_port}/healthz", timeout=1).status_code
                )
                break
            except httpx.TransportError:
                time.sleep(0.05)
        if not returned.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    killer = threading.Thread(target=_terminate_when_up)
    killer.start()
    try:
        serve_adversary(
            AdversaryApp(upstream=upstream, bundle=mfeat_bundle_dir, control_port=control_port)
        )
    finally:
        returned.set()
        killer.join()

    assert seen == [200]
    assert signal.getsignal(signal.SIGTERM) is previous


@pytest.mark.parametrize("taken", ["port", "control_port"])
def test_a_taken_port_is_a_one_line_error(
    upstream: str, mfeat_bundle_dir: Path, taken: str
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        app = AdversaryApp(
            upstream=upstream, bundle=mfeat_bundle_dir, **{taken: busy.getsockname()[1]}
        )

        with pytest.raises(CopurError, match="cannot bind") as caught:
            app.start()

    assert "\n" not in str(caught.value)
    app.stop()
