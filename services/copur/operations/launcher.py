"""The local launcher (``copur up``): every process of a topology on this machine,
readiness-checked, watched, and stopped cleanly. Also the library the end-to-end tests and the
scenario runner use.

Parties and adversaries learn the topology's ``tls`` section from ``--tls-mode`` / ``--tls-dir``
flags, the fusion center reads it from the topology itself; readiness probes present the probed
service's own certificate. Under mtls every service's files are checked before anything starts."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from copur.errors import CopurError
from copur.transport.auth.devkeys import dev_key
from copur.transport.auth.guard import load_authenticator
from copur.transport.auth.keys import Scope
from copur.transport.probe import probe_grpc, probe_http
from copur.transport.tls.credentials import TlsIdentity, http_ca, require_identities
from copur.transport.topology import Topology, service_name

__all__ = ["Cluster", "ClusterError", "ProcSpec"]


class ClusterError(CopurError):
    """A process of the cluster failed to start or to become ready."""


@dataclass
class ProcSpec:
    """One process: its name, command line and how to tell it is ready."""

    name: str
    argv: list[str]
    grpc_probe: str | None = None
    http_probe: str | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    reported: bool = False
    tls: TlsIdentity | None = field(
        default=None, repr=False
    )  # what the gRPC probe presents (None: plaintext)
    ca_file: Path | None = None  # what an https:// probe trusts (None: the system's store)

    def ready(self) -> bool:
        """True when every probe of the process answers (gRPC health SERVING, HTTP 2xx)."""
        grpc_ok = self.grpc_probe is None or probe_grpc(self.grpc_probe, timeout=0.5, tls=self.tls)
        return grpc_ok and (
            self.http_probe is None
            or probe_http(self.http_probe, timeout=0.5, ca_file=self.ca_file)
        )


class Cluster:
    """Parties, adversaries and the fusion center of ``topology`` as child processes on this
    machine."""

    def __init__(
        self,
        topology: Topology,
        *,
        config_path: str | Path,
        log_dir: str | Path,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        self.topology = topology
        self.config_path = Path(config_path)
        self.log_dir = Path(log_dir)
        self.python = python
        # The children see this topology's auth (the fusion center re-reads the file with its
        # environment).
        auth = {
            "COPUR_AUTH_MODE": topology.auth.mode,
            "COPUR_API_KEYS_FILE": topology.auth.keys_file,
        }
        self.env = {**os.environ, **(env or {}), **auth}
        self.procs: dict[str, ProcSpec] = {p.name: p for p in self._specs()}

    def _copur(self, *args: str) -> list[str]:
        return [self.python, "-m", "copur", *args]

    def _tls_flags(self) -> list[str]:
        return ["--tls-mode", self.topology.tls.mode, "--tls-dir", self.topology.tls.dir]

    def _http_flags(self) -> list[str]:
        """How an adversary's control endpoint serves: the topology's ``tls.http``."""
        return ["--tls-http", "https" if self.topology.https else "plaintext"]

    def _auth_flags(self) -> list[str]:
        """The topology's ``auth`` for the adversaries (the fusion center reads it from the
        topology)."""
        return [
            "--auth-mode",
            self.topology.auth.mode,
            "--api-keys-file",
            self.topology.auth.keys_file,
        ]

    def _specs(self) -> list[ProcSpec]:
        t, host = self.topology, self.topology.bind_host
        specs = [
            ProcSpec(
                service_name("party", p.index),
                self._copur(
                    "party",
                    "--bundle",
                    t.bundle,
                    "--party",
                    str(p.index),
                    "--port",
                    str(p.port),
                    "--host",
                    host,
                    *(["--data-dir", t.data_dir] if t.data_dir else []),
                    *self._tls_flags(),
                ),
                grpc_probe=f"127.0.0.1:{p.port}",
            )
            for p in t.parties
        ]
        specs += [
            ProcSpec(
                service_name("adversary", a.party),
                self._copur(
                    "adversary",
                    "--upstream",
                    t.party_address(a.party),
                    "--port",
                    str(a.port),
                    "--control-port",
                    str(a.control_port),
                    "--bundle",
                    t.bundle,
                    "--party",
                    str(a.party),
                    "--host",
                    host,
                    "--policy",
                    a.policy,
                    *(["--data-dir", t.data_dir] if t.data_dir else []),
                    *self._tls_flags(),
                    *self._http_flags(),
                    *self._auth_flags(),
                ),
                grpc_probe=f"127.0.0.1:{a.port}",
                http_probe=f"{self._http_base(a.control_port)}/readyz",
                ca_file=self.http_ca,
            )
            for a in t.adversaries
        ]
        specs.append(
            ProcSpec(
                "fusion",
                self._copur("fusion", "--config", str(self.config_path)),
                http_probe=f"{self._http_base(t.fusion.http_port)}/readyz",
                ca_file=self.http_ca,
            )
        )
        return specs

    # -- endpoints ---------------------------------------------------------------------------------
    def _http_base(self, port: int) -> str:
        return f"{self.topology.http_scheme}://127.0.0.1:{port}"

    @property
    def http_ca(self) -> Path | None:
        """The CA file that verifies the cluster's HTTPS front doors (``ca.pem`` of ``tls.dir``);
        None when they serve plain HTTP."""
        return http_ca(self.topology)

    @property
    def fusion_url(self) -> str:
        """The fusion center's HTTP front door on loopback (``https://`` unless the topology says
        plain HTTP: verify it with :attr:`http_ca`)."""
        return self._http_base(self.topology.fusion.http_port)

    @property
    def fusion_grpc(self) -> str:
        """The fusion center's gRPC front door on loopback (``host:port``)."""
        return f"127.0.0.1:{self.topology.fusion.grpc_port}"

    def control_url(self, party: int) -> str:
        """The control endpoint of the adversary in front of ``party``; a ClusterError when there
        is none."""
        adv = self.topology.adversary_for(party)
        if adv is None:
            raise ClusterError(f"party {party} has no adversary in the topology")
        return self._http_base(adv.control_port)

    # -- life cycle --------------------------------------------------------------------------------
    def _launch(self, spec: ProcSpec) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{spec.name}.log").open("ab")
        spec.popen = subprocess.Popen(
            spec.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        spec.reported = False
        log.close()

    def _tail(self, name: str, lines: int = 3) -> str:
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return " | ".join(text[-lines:])

    def _wait_ready(self, specs: list[ProcSpec], timeout: float) -> None:
        pending = {s.name: s for s in specs}
        deadline = time.monotonic() + timeout
        while pending:
            for name, spec in list(pending.items()):
                assert spec.popen is not None
                if spec.popen.poll() is not None:
                    raise ClusterError(
                        f"{name} exited with code {spec.popen.returncode} while starting: "
                        f"{self._tail(name)}"
                    )
                if spec.ready():
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise ClusterError(f"not ready after {timeout:.0f} s: {', '.join(sorted(pending))}")
            time.sleep(0.2)

    def check_ports_free(self) -> None:
        """Refuse to start when a port is taken: readiness probes would otherwise talk to
        whatever holds it."""
        for port, what in sorted(self.topology.listeners()):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
                )  # as the servers: TIME_WAIT is fine
                try:
                    sock.bind((self.topology.bind_host, port))
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:  # e.g. a privileged port:
                        continue  # the process itself will say why it cannot bind
                    raise ClusterError(
                        f"port {port} ({what}) on {self.topology.bind_host} is already in use: "
                        "another cluster "
                        "running? (`copur down` stops one started by `copur up`)"
                    ) from None

    def check_tls(self) -> None:
        """Under mtls, load every process's key pair (the probes present them): a missing file is
        a one-line ClusterError naming it, before anything starts."""
        try:
            identities = require_identities(self.topology, list(self.procs))
        except CopurError as exc:
            raise ClusterError(str(exc)) from None
        for name, spec in self.procs.items():
            spec.tls = identities.get(name)

    def check_auth(self) -> None:
        """Load the API keys the fusion center and adversaries will load: a missing or malformed
        keys file is a one-line ClusterError naming it, before anything starts."""
        try:
            load_authenticator(self.topology.auth.mode, self.topology.auth.keys_file, self.env)
        except CopurError as exc:
            raise ClusterError(str(exc)) from None

    def dev_key(self, scope: Scope) -> str | None:
        """The development key of ``scope`` that ``copur keys init`` wrote beside the topology's
        keys file (``<dir>/keys/<scope>.key``): what the commands that start a cluster and call
        it use when given no key. None when there is none, or under ``auth.mode: none``."""
        if self.topology.auth.mode == "none":
            return None
        return dev_key(self.topology.auth.keys_file, scope)

    def start(self, timeout: float = 120.0) -> Cluster:
        """Start parties and adversaries, wait until they serve, then the fusion center until it
        is ready."""
        self.check_ports_free()
        self.check_tls()
        self.check_auth()
        backends = [s for n, s in self.procs.items() if n != "fusion"]
        try:
            for spec in backends:
                self._launch(spec)
            self._wait_ready(backends, timeout)
            self._launch(self.procs["fusion"])
            self._wait_ready([self.procs["fusion"]], timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one process (a fault to inject)."""
        spec = self.procs[name]
        if spec.popen is not None and spec.popen.poll() is None:
            spec.popen.send_signal(sig)
            spec.popen.wait(10)
        spec.reported = True

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Stop process ``name`` (SIGTERM), start it again and wait until it is ready."""
        self.kill(name, signal.SIGTERM)
        self._launch(self.procs[name])
        self._wait_ready([self.procs[name]], timeout)

    def dead(self) -> list[tuple[str, int]]:
        """Processes that exited since the last call (each reported once)."""
        out = []
        for spec in self.procs.values():
            if spec.popen is not None and not spec.reported and spec.popen.poll() is not None:
                spec.reported = True
                out.append((spec.name, spec.popen.returncode))
        return out

    def pids(self) -> dict[str, int]:
        """Process name -> pid of every process started."""
        return {n: s.popen.pid for n, s in self.procs.items() if s.popen is not None}

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every process (fusion first), then SIGKILL what is left after ``grace``
        seconds."""
        order = ["fusion", *[n for n in self.procs if n != "fusion"]]
        running = [self.procs[n].popen for n in order if self.procs[n].popen is not None]
        for p in running:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in running:
            if p is None:
                continue
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def write_state(self, path: Path) -> None:
        """Write the state file ``copur down`` reads: this process's pid, every child's pid, the
        front door."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"up_pid": os.getpid(), "pids": self.pids(), "fusion": self.fusion_url})
        )
