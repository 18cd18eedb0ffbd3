"""``copur compose demo`` and ``copur compose faults``: the engine (started here if none answers),
the offline base image and the project image, a compose bring-up, the work from the host over the
published ports with the certificates and keys copied out of the containers, and always the
teardown: ``down --volumes``, a check that nothing of the project is left, and the engine stopped
if it was started here. Each phase is timed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from copur.errors import CopurError
from copur.evaluation.containers.faults import FaultResult, container_faults, run_faults
from copur.evaluation.containers.load import Load
from copur.evaluation.containers.report import write_fault_table
from copur.evaluation.scenarios.model import PredictRecord, ScenarioReport
from copur.operations.containers.compose import ComposeProject
from copur.operations.containers.engine import DockerError, Engine, ensure_engine
from copur.operations.containers.images import build_base_image, build_image, fill_wheelhouse
from copur.operations.demo import demo_samples, demo_steps
from copur.science.bundle import load_bundle
from copur.transport.topology import load_topology

__all__ = ["Access", "ComposeSession", "compose_demo", "compose_faults", "compose_session"]

ATTACK_OVERLAY = Path("deploy/compose/attack-every-party.yml")
SCENARIO = Path("clients/scenarios/flip-one-party.yaml")


@dataclass(frozen=True, kw_only=True)
class Access:
    """What the host needs to call the containers: the compose cluster's certificates, its
    development keys and a copy of its bundle (the test ids and labels)."""

    certs: Path
    bundle: Path

    def key(self, scope: str) -> str:
        """The development key of ``scope`` (predict or admin)."""
        return (self.certs / "keys" / f"{scope}.key").read_text().strip()

    @property
    def ca(self) -> Path:
        """The cluster's CA: what verifies its HTTPS front doors from the host."""
        return self.certs / "ca.pem"


@dataclass(kw_only=True)
class ComposeSession:
    """A running compose project, how to reach it from the host, and the time of each phase."""

    engine: Engine
    project: ComposeProject
    access: Access
    phases: dict[str, float] = field(default_factory=dict)


@contextmanager
def _phase(phases: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        phases[name] = round(time.monotonic() - started, 1)


@contextmanager
def compose_session(
    repo: Path,
    *,
    work: Path,
    engine_root: Path,
    name: str = "copur",
    overlays: tuple[Path, ...] = (),
    say: Callable[[str], None] = print,
) -> Iterator[ComposeSession]:
    """Engine, images, ``up --wait``, certificates and bundle copied to ``work``; on exit, always:
    ``down --volumes``, nothing of project ``name`` left (else :class:`DockerError`), the engine
    stopped if started here (and checked gone)."""
    phases: dict[str, float] = {}
    with _phase(phases, "engine"):
        engine = ensure_engine(engine_root, say=say)
    project = ComposeProject(
        engine=engine, repo=repo, name=name, files=(Path("docker-compose.yml"), *overlays)
    )
    try:
        with _phase(phases, "base image"):
            build_base_image(engine, work_dir=engine_root / "base", say=say)
        with _phase(phases, "wheelhouse"):
            fill_wheelhouse(repo, say=say)
        with _phase(phases, "image build"):
            build_image(engine, repo, log=work / "build.log", say=say)
        with _phase(phases, "bring-up"):
            say(f"docker compose -p {name} up --wait ({len(project.files)} file(s))")
            project.up()
        access = Access(
            certs=project.copy_out("fusion", "/certs", work / "certs"),
            bundle=project.copy_out("fusion", "/bundle/mfeat", work / "mfeat"),
        )
        yield ComposeSession(engine=engine, project=project, access=access, phases=phases)
    finally:
        with _phase(phases, "teardown"):
            _teardown(engine, project, say=say)
        say(_phases(phases))


def _teardown(engine: Engine, project: ComposeProject, *, say: Callable[[str], None]) -> None:
    try:
        project.down()
        left = project.leftovers()
        if left:
            raise DockerError(f"compose project {project.name} left behind {left}")
        say(f"compose project {project.name}: down, nothing left behind")
    finally:
        if engine.started_here:
            pid = engine.process.pid if engine.process else None
            engine.stop()
            say(f"docker engine: stopped dockerd (pid {pid})")


def compose_demo(
    repo: Path,
    *,
    work: Path,
    engine_root: Path,
    samples: int = 200,
    say: Callable[[str], None] = print,
) -> int:
    """The demo's steps and the flip-one-party scenario, from the host, against the compose cluster
    with an adversary in front of every party (:data:`ATTACK_OVERLAY`). Returns the scenario's exit
    status (0: every expectation held)."""
    from copur.evaluation.scenarios.runner import scenario_command
    from copur_client import AdversaryControl, CopurClientError, FusionClient

    config = repo / "deploy/cluster-scenarios.yaml"
    topology = load_topology(config, env={})
    with compose_session(
        repo, work=work, engine_root=engine_root, overlays=(ATTACK_OVERLAY,), say=say
    ) as session:
        access = session.access
        url = f"{topology.http_scheme}://127.0.0.1:{topology.fusion.http_port}"
        adversary = topology.adversaries[0]
        control_url = f"{topology.http_scheme}://127.0.0.1:{adversary.control_port}"
        bundle = load_bundle(access.bundle)
        ids, labels = demo_samples(bundle, samples)
        fusion = FusionClient(
            url, timeout=120, retries=3, api_key=access.key("predict"), ca_file=access.ca
        )
        control = AdversaryControl(control_url, api_key=access.key("admin"), ca_file=access.ca)
        try:
            with _phase(session.phases, "demo"):
                say(f"containers ready: fusion {url}, adversary control {control_url}")
                demo_steps(
                    fusion,
                    control,
                    ids=ids,
                    labels=labels,
                    party=adversary.party,
                    party_name=bundle.manifest.party_names[adversary.party],
                    say=say,
                )
                control.set_policy("none")
        except CopurClientError as exc:
            raise CopurError(str(exc)) from None
        finally:
            fusion.close()
            control.close()
        with _phase(session.phases, "scenario"):
            status = scenario_command(
                repo / SCENARIO,
                url=url,
                up=False,
                config=config,
                bundle=str(access.bundle),
                out=work / "report",
                progress=True,
                api_key=access.key("predict"),
                admin_key=access.key("admin"),
                ca_file=access.ca,
            )
        _print_scenario(work / "report" / "report.json", say)
    return status


def _print_scenario(report: Path, say: Callable[[str], None]) -> None:
    data = ScenarioReport.from_json(json.loads(report.read_text()))
    for step in data.steps:
        if isinstance(step, PredictRecord):
            accs = ", ".join(f"{d} {m.accuracy:.3f}" for d, m in step.defenses.items())
            say(f"scenario {data.scenario.name}, {step.name}: accuracy {accs}")


def compose_faults(
    repo: Path,
    *,
    work: Path,
    engine_root: Path,
    markdown: Path | None,
    concurrency: int = 4,
    say: Callable[[str], None] = print,
) -> list[FaultResult]:
    """Every fault of :func:`container_faults` on the default compose cluster under a load of
    ``concurrency`` clients; the results in ``work``/faults.json and, with ``markdown``, the table
    written into that file between its fault-table markers."""
    from copur_client import FusionClient

    topology = load_topology(repo / "deploy/cluster.yaml", env={})
    with compose_session(repo, work=work, engine_root=engine_root, say=say) as session:
        url = f"{topology.http_scheme}://127.0.0.1:{topology.fusion.http_port}"
        access = session.access
        ids, _labels = demo_samples(load_bundle(access.bundle), 200)
        admin = FusionClient(
            url, timeout=10, retries=0, admin_key=access.key("admin"), ca_file=access.ca
        )
        load = Load(
            url,
            api_key=access.key("predict"),
            ids=ids,
            concurrency=concurrency,
            ca_file=access.ca,
        )
        with _phase(session.phases, "faults"), load:
            results = run_faults(
                session.project, container_faults(), load, parties=admin.parties, say=say
            )
        admin.close()
    (work / "faults.json").write_text(
        json.dumps([r.model_dump() for r in results], indent=2) + "\n"
    )
    if markdown is not None:
        write_fault_table(markdown, results, concurrency=concurrency)
        say(f"fault table written into {markdown}")
    return results


def _phases(phases: dict[str, float]) -> str:
    return "phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
