"""End to end: `copur up` brings up 6 parties + 1 adversary + the fusion center on loopback,
every gRPC link mutual TLS (the topology default, key pairs from the `cluster_tls` fixture);
predictions over HTTP and gRPC agree with the offline engine; the adversary flips live; a
killed party is a missing block; `copur down` leaves no process behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import torch
import yaml

from clusterkit import alive, free_ports
from copur.science.attacks import AttackContext, make_attack
from copur.science.bundle import load_bundle
from copur.science.data import load_dataset
from copur.science.defenses import Engine
from copur.transport.auth import dev_key
from copur.transport.probe import probe_grpc
from copur.transport.tls.certs import write_certs
from copur.transport.tls.credentials import load_identity
from copur.transport.topology import load_topology
from copur_client.serde import predict_request_to_proto, predictions_from_proto
from copur_client.v1 import fusion_pb2_grpc

IDS = list(range(0, 2000, 25))  # 80 samples spread over the data set


class Running:
    """The cluster of ``copur up``: HTTPS front doors (the mtls topology's default), verified
    against the cluster's CA by :attr:`http`."""

    def __init__(
        self,
        proc: subprocess.Popen[str],
        log_dir: Path,
        topology: dict,
        keys_file: str,
        ca: Path,
    ) -> None:
        self.proc, self.log_dir, self.topology, self.ca = proc, log_dir, topology, ca
        # The development keys beside the keys file the cluster loaded (`copur keys init`).
        self.predict_auth = {"Authorization": f"Bearer {dev_key(keys_file, 'predict')}"}
        self.admin_auth = {"Authorization": f"Bearer {dev_key(keys_file, 'admin')}"}
        self.url = f"https://127.0.0.1:{topology['fusion']['http_port']}"
        self.grpc = f"127.0.0.1:{topology['fusion']['grpc_port']}"
        self.control = f"https://127.0.0.1:{topology['adversaries'][0]['control_port']}"
        self.http = httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=60)
        self.killed: list[str] = []

    def state(self) -> dict:
        return json.loads((self.log_dir / "cluster.json").read_text())

    def predict(self, ids: list[int], defense: str, **extra: object) -> httpx.Response:
        body = {"sample_ids": ids, "defense": defense, **extra}
        return self.http.post(f"{self.url}/v1/predict", json=body, headers=self.predict_auth)


@pytest.fixture(scope="module")
def running(
    mfeat_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory, cluster_tls: Path
) -> Iterator[Running]:
    ports = free_ports(10)
    topology = {
        "bundle": str(mfeat_bundle_dir),
        "parties": [{"index": i, "port": ports[i]} for i in range(6)],
        "adversaries": [{"party": 1, "port": ports[6], "control_port": ports[7], "policy": "none"}],
        "fusion": {
            "http_port": ports[8],
            "grpc_port": ports[9],
            "min_parties": 4,
            "max_delay_ms": 2,
        },
    }
    folder = tmp_path_factory.mktemp("cluster")
    config = folder / "cluster.yaml"
    config.write_text(yaml.safe_dump(topology))
    log_dir = folder / "logs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "copur", "up", "--config", str(config), "--log-dir", str(log_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        lines.append(line)
        if "cluster ready" in line or proc.poll() is not None:
            break
    assert any("cluster ready" in ln for ln in lines), "".join(lines) + (
        proc.stderr.read() if proc.stderr else ""
    )
    run = Running(
        proc, log_dir, topology, load_topology(config).auth.keys_file, cluster_tls / "ca.pem"
    )
    pids = list(run.state()["pids"].values())
    yield run
    run.http.close()
    # `copur down` stops everything the launcher started.
    down = subprocess.run(
        [sys.executable, "-m", "copur", "down", "--log-dir", str(log_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    proc.wait(30)
    assert down.returncode == 0, down.stderr
    time.sleep(0.5)
    assert [p for p in [*pids, proc.pid] if alive(p)] == []
    stderr = proc.stderr.read() if proc.stderr else ""
    for name in run.killed:
        assert f"process {name} exited" in stderr, stderr


@pytest.fixture(scope="module")
def offline(mfeat_bundle_dir: Path) -> tuple[Engine, torch.Tensor, torch.Tensor]:
    bundle = load_bundle(mfeat_bundle_dir)
    data = load_dataset(bundle.manifest.dataset_spec)
    engine = Engine(bundle)
    with torch.no_grad():
        h = engine.models.embed([torch.as_tensor(x) for x in data.party_rows(np.array(IDS))])
    return engine, h, torch.as_tensor(data.labels[IDS])


def _offline_labels(engine: Engine, h: torch.Tensor, defense: str) -> np.ndarray:
    full = torch.ones(len(h), 6, dtype=torch.bool)
    return engine.defense(defense).predict(h, full).labels.numpy()


def _accuracy(labels: list[int] | np.ndarray, y: torch.Tensor) -> float:
    return float((np.asarray(labels) == y.numpy()).mean())


@pytest.mark.parametrize("defense", ["none", "copur"])
def test_http_and_grpc_agree_with_the_offline_engine(
    running: Running, offline, defense: str
) -> None:
    engine, h, _ = offline
    expected = _offline_labels(engine, h, defense)
    client = load_identity(os.environ["COPUR_TLS_DIR"], "client")

    http = running.predict(IDS, defense)
    with grpc.secure_channel(running.grpc, client.channel_credentials()) as channel:
        reply = fusion_pb2_grpc.FusionServiceStub(channel).Predict(
            predict_request_to_proto(IDS, defense, False),
            timeout=60,
            metadata=(("authorization", running.predict_auth["Authorization"]),),
        )
    via_grpc = predictions_from_proto(reply)

    assert http.status_code == 200, http.text
    via_http = http.json()["predictions"]
    assert [p["sample_id"] for p in via_http] == IDS and [p.sample_id for p in via_grpc] == IDS
    http_labels = [p["label"] for p in via_http]
    assert np.mean(np.asarray(http_labels) == expected) >= 0.98
    assert [p.label for p in via_grpc] == http_labels
    np.testing.assert_allclose(
        [p.probabilities for p in via_grpc], [p["probabilities"] for p in via_http], atol=1e-4
    )
    assert all(p["missing_parties"] == [] for p in via_http)


def test_every_grpc_port_refuses_plaintext_and_serves_mtls(running: Running) -> None:
    # Prepare: every gRPC server the launcher started, and the application's key pair
    t = running.topology
    ports = (
        [p["port"] for p in t["parties"]]
        + [a["port"] for a in t["adversaries"]]
        + [t["fusion"]["grpc_port"]]
    )
    client = load_identity(os.environ["COPUR_TLS_DIR"], "client")

    # Execute
    plaintext = [probe_grpc(f"127.0.0.1:{port}", timeout=2) for port in ports]
    mutual = [probe_grpc(f"127.0.0.1:{port}", timeout=5, tls=client) for port in ports]

    # Assert
    assert plaintext == [False] * len(ports)
    assert mutual == [True] * len(ports)


def test_live_flip_through_the_adversary(running: Running, offline) -> None:
    engine, h, y = offline
    attack = make_attack("flip", amp=10.0)
    hh, obs = attack(
        h,
        torch.ones(len(h), 6, dtype=torch.bool),
        (1,),
        AttackContext(num_parties=6, generator=torch.Generator()),
    )
    offline_copur = _accuracy(engine.defense("copur").predict(hh, obs).labels.numpy(), y)

    flip = {"attack": "flip", "params": {"amp": 10}}
    put = running.http.put(f"{running.control}/v1/policy", json=flip, headers=running.admin_auth)
    none = running.predict(IDS, "none").json()["predictions"]
    copur = running.predict(IDS, "copur").json()["predictions"]
    none_policy = {"attack": "none", "params": {}}
    running.http.put(f"{running.control}/v1/policy", json=none_policy, headers=running.admin_auth)

    assert put.status_code == 200, put.text
    assert _accuracy([p["label"] for p in none], y) < 0.5
    assert abs(_accuracy([p["label"] for p in copur], y) - offline_copur) <= 0.1
    assert np.mean([1 in p["flagged_parties"] for p in copur]) >= 0.9


def test_a_killed_party_is_a_missing_block_and_is_reported(running: Running, offline) -> None:
    _, _, y = offline
    pid = running.state()["pids"]["party-3"]

    os.kill(pid, signal.SIGKILL)
    running.killed.append("party-3")
    time.sleep(1.0)
    answer = running.predict(IDS, "copur")
    parties = running.http.get(f"{running.url}/v1/parties", headers=running.admin_auth).json()[
        "parties"
    ]
    metrics = running.http.get(f"{running.url}/metrics").text

    assert answer.status_code == 200, answer.text
    preds = answer.json()["predictions"]
    assert all(p["missing_parties"] == [3] for p in preds)
    assert _accuracy([p["label"] for p in preds], y) >= 0.9
    assert parties[3]["state"] == "down" and parties[3]["failures"] >= 1
    assert 'copur_party_failures_total{party="3"' in metrics


def test_bad_requests_are_4xx_with_a_message(running: Running) -> None:
    cases = [
        ({"sample_ids": []}, 400, "empty"),
        ({"sample_ids": [1, 1]}, 400, "duplicate"),
        ({"sample_ids": [99999]}, 404, "unknown sample ids: 99999"),
        ({"sample_ids": [1], "defense": "magic"}, 400, "unknown defense 'magic'"),
        ({"sample_ids": "1"}, 422, "sample_ids: Input should be a valid list"),
    ]

    for body, status, text in cases:
        r = running.http.post(f"{running.url}/v1/predict", json=body, headers=running.predict_auth)
        assert r.status_code == status and text in r.json()["detail"], (body, r.status_code, r.text)


def test_every_front_door_demands_a_key(running: Running) -> None:
    # Prepare: the application's mTLS key pair, no API key
    client = load_identity(os.environ["COPUR_TLS_DIR"], "client")
    body = {"sample_ids": [1], "defense": "none"}

    # Execute
    anonymous = running.http.post(f"{running.url}/v1/predict", json=body)
    parties = running.http.get(f"{running.url}/v1/parties", headers=running.predict_auth)
    control = running.http.get(f"{running.control}/v1/policy")
    control_predict = running.http.get(f"{running.control}/v1/policy", headers=running.predict_auth)
    request = predict_request_to_proto([1], "none", False)
    with (
        grpc.secure_channel(running.grpc, client.channel_credentials()) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        fusion_pb2_grpc.FusionServiceStub(channel).Predict(request, timeout=30)

    # Assert
    assert (anonymous.status_code, parties.status_code) == (401, 403)
    assert (control.status_code, control_predict.status_code) == (401, 403)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


_CLIENT_ONLY = """
import importlib.util, json, sys
from copur_client import FusionClient, GrpcFusionClient, GrpcTls
url, target, tls_dir, ids = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
with FusionClient(url, ca_file=f"{tls_dir}/ca.pem") as client:
    over_http = [p.label for p in client.predict(ids, defense="copur")]
with GrpcFusionClient(target, tls=GrpcTls.from_dir(tls_dir)) as client:
    over_grpc = [p.label for p in client.predict(ids, defense="copur")]
server = ("torch", "copur", "fastapi", "safetensors")
server_side = [m for m in server if importlib.util.find_spec(m)]
print(json.dumps({"http": over_http, "grpc": over_grpc, "server_side": server_side}))
"""


@pytest.fixture(scope="module")
def client_only_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only the client package installed (``pip install clients/``, as a
    user would, from a copy so that the build leaves nothing in the checkout)."""
    folder = tmp_path_factory.mktemp("client-only")
    source = folder / "clients"
    shutil.copytree(
        Path(__file__).resolve().parents[2] / "clients",
        source,
        ignore=shutil.ignore_patterns("build"),
    )
    subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True, timeout=120)
    python = folder / "venv" / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert pip.returncode == 0, pip.stderr
    return python


def test_the_client_package_alone_predicts_over_http_and_grpc(
    running: Running, client_only_python: Path, cluster_tls: Path
) -> None:
    # Prepare: what the server's own venv answers for the same ids
    ids = IDS[:20]
    expected = [p["label"] for p in running.predict(ids, "copur").json()["predictions"]]
    env = {
        **os.environ,
        "COPUR_API_KEY": running.predict_auth["Authorization"].removeprefix("Bearer "),
    }
    env.pop("PYTHONPATH", None)

    # Execute: the client package in a virtualenv of its own
    args = [running.url, running.grpc, str(cluster_tls), json.dumps(ids)]
    done = subprocess.run(
        [str(client_only_python), "-c", _CLIENT_ONLY, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=client_only_python.parents[2],
    )
    installed = subprocess.run(
        [str(client_only_python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Assert: same labels over HTTP and gRPC, and no torch, no server package in that virtualenv
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer == {"http": expected, "grpc": expected, "server_side": []}
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert "copur-client" in names and not names & {"torch", "copur", "fastapi", "uvicorn"}


def _other_ca_pair(folder: Path) -> tuple[Path, Path, Path]:
    """A CA that is not the cluster's and a client key pair it signed: (ca, cert, key) files."""
    write_certs(folder, ["client"], force=True)
    return folder / "ca.pem", folder / "client.pem", folder / "client-key.pem"


@pytest.mark.parametrize("door", ["fusion", "adversary control"])
def test_https_front_doors_refuse_plain_http_and_untrusted_certificates(
    running: Running, cluster_tls: Path, tmp_path: Path, door: str
) -> None:
    # Prepare: the door's https:// URL and probe path, a second CA with a client key pair of its own
    base = running.url if door == "fusion" else running.control
    url = f"{base}/readyz"
    other_ca, other_cert, other_key = _other_ca_pair(tmp_path / "other")
    ours = ssl.create_default_context(cafile=str(cluster_tls / "ca.pem"))
    ours_with_cert = ssl.create_default_context(cafile=str(cluster_tls / "ca.pem"))
    ours_with_cert.load_cert_chain(cluster_tls / "client.pem", cluster_tls / "client-key.pem")
    foreign_client = ssl.create_default_context(cafile=str(cluster_tls / "ca.pem"))
    foreign_client.load_cert_chain(other_cert, other_key)
    trusting_other = ssl.create_default_context(cafile=str(other_ca))

    # Execute
    verified = httpx.get(url, verify=ours, timeout=10)
    with_our_cert = httpx.get(url, verify=ours_with_cert, timeout=10)
    with pytest.raises(httpx.TransportError):
        httpx.get(url.replace("https://", "http://"), timeout=10)  # plain HTTP: no answer
    with pytest.raises(httpx.ConnectError) as untrusted_server:
        httpx.get(url, verify=trusting_other, timeout=10)  # the client refuses the server
    with pytest.raises(httpx.TransportError) as untrusted_client:
        httpx.get(url, verify=foreign_client, timeout=10)  # the server refuses the client

    # Assert: HTTPS with the cluster's CA answers (with or without a client certificate); plain
    # HTTP, a server certificate of another CA and a client certificate of another CA do not
    assert (verified.status_code, with_our_cert.status_code) == (200, 200)
    assert "CERTIFICATE_VERIFY_FAILED" in str(untrusted_server.value)
    assert "disconnected" in str(untrusted_client.value) or "alert" in str(untrusted_client.value)


def test_copur_predict_works_over_https_and_refuses_an_unverified_server(
    running: Running, cluster_tls: Path
) -> None:
    # Prepare: the labels the server answers for a few ids; the CLI's environment with a key
    ids = IDS[:5]
    expected = [p["label"] for p in running.predict(ids, "copur").json()["predictions"]]
    env = {
        **os.environ,
        "COPUR_API_KEY": running.predict_auth["Authorization"].removeprefix("Bearer "),
    }
    env.pop("COPUR_TLS_DIR", None)
    env.pop("COPUR_CA_FILE", None)
    command = [sys.executable, "-m", "copur", "predict", "--url", running.url, "--json"]
    ids_args = [str(i) for i in ids]

    # Execute: with the cluster's CA (from --tls-dir), then with the system's trust store only
    trusted = subprocess.run(
        [*command, "--tls-dir", str(cluster_tls), "--defense", "copur", *ids_args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    untrusted = subprocess.run(
        [*command, "--defense", "copur", *ids_args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )

    # Assert: the same labels over HTTPS; an unverified server is one line naming the TLS failure
    assert trusted.returncode == 0, trusted.stderr
    labels = [p["label"] for p in json.loads(trusted.stdout)["predictions"]]
    assert labels == expected
    assert untrusted.returncode == 2
    assert untrusted.stderr.count("\n") == 1 and "TLS failed" in untrusted.stderr, untrusted.stderr
    assert "the server's certificate did not verify" in untrusted.stderr


_TRITON = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

http_addr, grpc_addr, certs, key, ids = sys.argv[1:4] + [sys.argv[4], json.loads(sys.argv[5])]
headers = lambda: {"authorization": f"Bearer {key}"}  # tritonclient writes into the dict it gets
answers = {}
http = httpclient.InferenceServerClient(
    http_addr, ssl=True, ssl_options={"ca_certs": f"{certs}/ca.pem"}
)
tensor = httpclient.InferInput("sample_ids", [len(ids)], "INT64")
tensor.set_data_from_numpy(np.asarray(ids, dtype=np.int64))
result = http.infer("copur", [tensor], parameters={"defense": "copur"}, headers=headers())
answers["http"] = [result.as_numpy("label").tolist(), result.as_numpy("flagged").tolist()]
answers["http_ready"] = http.is_model_ready("copur")
grpc = grpcclient.InferenceServerClient(
    grpc_addr, ssl=True, root_certificates=f"{certs}/ca.pem",
    private_key=f"{certs}/client-key.pem", certificate_chain=f"{certs}/client.pem",
)
tensor = grpcclient.InferInput("sample_ids", [len(ids)], "INT64")
tensor.set_data_from_numpy(np.asarray(ids, dtype=np.int64))
result = grpc.infer("copur", [tensor], parameters={"defense": "copur"}, headers=headers())
answers["grpc"] = [result.as_numpy("label").tolist(), result.as_numpy("flagged").tolist()]
print(json.dumps(answers))
"""


def test_tritonclient_over_https_and_mtls_agrees_with_v1_under_a_live_attack(
    running: Running, cluster_tls: Path
) -> None:
    # Prepare: party 1's adversary flips its block x10; what /v1/predict answers for the ids
    ids = IDS[:40]
    flip = {"attack": "flip", "params": {"amp": 10}}
    put = running.http.put(f"{running.control}/v1/policy", json=flip, headers=running.admin_auth)
    try:
        v1 = running.predict(ids, "copur").json()["predictions"]
        key = running.predict_auth["Authorization"].removeprefix("Bearer ")
        http_addr = running.url.removeprefix("https://")

        # Execute: tritonclient (HTTP over HTTPS with the cluster's CA, gRPC over mTLS), in a
        # process of its own (its gRPC stubs and ours define the same protobuf names)
        args = [http_addr, running.grpc, str(cluster_tls), key, json.dumps(ids)]
        done = subprocess.run(
            [sys.executable, "-c", _TRITON, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        none = {"attack": "none", "params": {}}
        running.http.put(f"{running.control}/v1/policy", json=none, headers=running.admin_auth)

    # Assert: the same labels and flags as /v1 over both transports, and party 1 flagged
    assert put.status_code == 200, put.text
    assert done.returncode == 0, done.stderr[-2000:]
    answers = json.loads(done.stdout)
    labels = [p["label"] for p in v1]
    flagged = [[m in p["flagged_parties"] for m in range(6)] for p in v1]
    assert answers["http_ready"] is True
    assert answers["http"] == [labels, flagged]
    assert answers["grpc"] == [labels, flagged]
    assert np.mean([row[1] for row in flagged]) >= 0.9
