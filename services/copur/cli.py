"""The ``copur`` command line. Domain errors print one line and exit 2; nothing runs at import."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from copur.errors import ConfigError
from copur.evaluation.bench.cli import bench_app
from copur.operations.certs_cli import certs_app
from copur.operations.clikit import guard as _guard
from copur.operations.keys_cli import keys_app

__all__ = ["app", "main"]

TLS_MODE_HELP = "mtls: serve and dial with this service's certificate; plaintext: loopback --host only."
TLS_DIR_HELP = "Directory of `copur certs init` output (ca.pem, <service>.pem, <service>-key.pem)."

app = typer.Typer(
    name="copur",
    help="CoPur: robust collaborative inference. Train a model bundle, inspect it, serve and attack it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Directory to write the model bundle into.")],
    dataset: Annotated[
        str, typer.Option(help="Data set: mfeat (embedded), digits, nus-wide, extrasensory, csv.")
    ] = "mfeat",
    data_dir: Annotated[str | None, typer.Option(help="Where the data set's files are (not for mfeat/digits).")] = None,
    divisions: Annotated[
        list[str] | None,
        typer.Option(
            "--divisions", help="Column division per feature table, e.g. '0 360 634'; repeat for several tables."
        ),
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="Label column (csv, extrasensory) or comma-separated concepts (nus-wide).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the split, initialisation and shuffling.")] = 0,
    test_fraction: Annotated[
        float, typer.Option(help="Share of samples held out for testing (where the data set has no published split).")
    ] = 0.2,
    vfl_epochs: Annotated[int, typer.Option(help="Stage 1 (joint VFL) epochs.")] = 100,
    ae_epochs: Annotated[int, typer.Option(help="Stage 2 (subspace autoencoder) epochs.")] = 300,
    head_epochs: Annotated[int, typer.Option(help="Stage 3 (head on AE outputs) epochs.")] = 30,
    emb_dim: Annotated[int, typer.Option(help="Embedding width e of each party.")] = 16,
    ae_code: Annotated[int, typer.Option(help="AE code size; must be well below parties x emb_dim.")] = 32,
    device: Annotated[str, typer.Option(help="auto (cuda when present), cpu or cuda.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train the three stages on a data set and write a model bundle."""

    def run() -> None:
        from copur.science.bundle import save_bundle
        from copur.science.calibration import calibrate_bundle
        from copur.science.config import ModelConfig, TrainConfig
        from copur.science.data import DatasetSpec, load_dataset
        from copur.science.device import resolve_device
        from copur.science.train import train_all

        spec = DatasetSpec(
            name=dataset,
            data_dir=data_dir,
            divisions=tuple(divisions or ()),
            label=label,
            seed=seed,
            test_fraction=test_fraction,
        )
        config = TrainConfig(
            seed=seed,
            vfl_epochs=vfl_epochs,
            ae_epochs=ae_epochs,
            head_epochs=head_epochs,
            model=ModelConfig(emb_dim=emb_dim, ae_code=ae_code),
        )
        data = load_dataset(spec)
        config.model.check_code_size(data.num_parties)
        dev = resolve_device(device)
        typer.echo(
            f"training on {data.name}: {data.num_parties} parties {data.party_dims}, "
            f"{len(data.train_ids)} train / {len(data.test_ids)} test samples, device {dev}",
            err=True,
        )
        result = train_all(data, config, device=dev, progress=progress)
        save_bundle(out, data=data, spec=spec, config=config, result=result)
        typer.echo("calibrating flag thresholds on the validation split", err=True)
        calibrate_bundle(out)
        typer.echo(f"bundle written to {out}")
        _print_summary(out)

    _guard(run)


def _summary(manifest: Any) -> str:
    lines = [
        f"data set     {manifest.dataset['name']}  ({manifest.num_samples} samples, {manifest.num_classes} classes)",
        f"parties      {manifest.num_parties}",
    ]
    for i, (name, dim) in enumerate(zip(manifest.party_names, manifest.party_dims, strict=True)):
        lines.append(f"  party {i}    {name:<14} {dim:>5} features -> {manifest.model['emb_dim']}-dim embedding")
    width = manifest.num_parties * manifest.model["emb_dim"]
    lines += [
        f"autoencoder  {width} -> {manifest.model['ae_hidden']} -> {manifest.model['ae_code']} -> "
        f"{manifest.model['ae_hidden']} -> {width}",
        f"package      copur {manifest.package_version}, created {manifest.created}",
        "metrics (clean test set)",
    ]
    lines += [f"  {k:<30} {v:.4f}" for k, v in manifest.metrics.items()]
    return "\n".join(lines)


def _print_summary(path: Path) -> None:
    from copur.science.bundle import read_manifest

    typer.echo(_summary(read_manifest(path)))


@app.command()
def info(
    bundle: Annotated[Path, typer.Argument(help="Model bundle directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole manifest as JSON.")] = False,
    verify: Annotated[bool, typer.Option(help="Also verify every file's sha256.")] = True,
) -> None:
    """Print a bundle's manifest: parties, dims, clean test accuracy."""

    def run() -> None:
        from copur.science.bundle import load_bundle, read_manifest

        manifest = load_bundle(bundle).manifest if verify else read_manifest(bundle)
        if as_json:
            typer.echo(json.dumps(manifest.model_dump(), indent=2))
        else:
            typer.echo(_summary(manifest))

    _guard(run)


@app.command()
def calibrate(
    bundle: Annotated[Path, typer.Argument(help="Model bundle directory.")],
    quantile: Annotated[float, typer.Option(help="Quantile of clean validation residuals per party.")] = 0.99,
    factor: Annotated[float, typer.Option(help="Flag threshold = factor x that quantile.")] = 3.0,
) -> None:
    """(Re)compute a bundle's block scales and flag thresholds on its clean validation split."""

    def run() -> None:
        from copur.science.calibration import calibrate_bundle

        cal = calibrate_bundle(bundle, quantile=quantile, factor=factor)
        for name, thr in cal["thresholds"].items():
            typer.echo(f"{name:<10} thresholds " + " ".join(f"{t:.3f}" for t in thr))

    _guard(run)


@app.command()
def evaluate(
    bundle: Annotated[Path, typer.Argument(help="Model bundle directory (trained and calibrated).")],
    out: Annotated[Path, typer.Option(help="Directory for results.json, results.md and the plots.")],
    quick: Annotated[bool, typer.Option(help="A small grid on 100 test samples and a small suite (minutes).")] = False,
    samples: Annotated[int | None, typer.Option(help="Evaluate on this many test samples (default: all).")] = None,
    defense: Annotated[list[str] | None, typer.Option(help="Defenses to run (repeat); default all.")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Also write the markdown report here.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling and random attacks.")] = 0,
    suite: Annotated[bool, typer.Option(help="Measure the worst of the attack suite (the headline).")] = True,
    suite_samples: Annotated[
        int | None, typer.Option(help="Test samples the suite runs on (default 200; 48 with --quick).")
    ] = None,
    search: Annotated[
        int | None, typer.Option(help="Candidates per query-based attack of the suite (default 32; 8 with --quick).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Steps per gradient attack of the suite (default 50; 10 with --quick).")
    ] = None,
    liars: Annotated[
        str | None, typer.Option(help="Numbers of lying parties, comma-separated (default 0,1,2,3; 0,1,2 quick).")
    ] = None,
    max_sets: Annotated[
        list[str] | None,
        typer.Option(help="T=N: at most N attacker sets of t liars, spread evenly (repeat; default 3=5)."),
    ] = None,
    suite_attack: Annotated[
        list[str] | None,
        typer.Option(help="Keep only the suite's attacks of this name, e.g. mimic (repeat; default: the whole suite)."),
    ] = None,
    with_report: Annotated[
        list[Path] | None,
        typer.Option("--with", help="Another data set's results.json to summarise in the markdown (repeat)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto (cuda when present), cpu or cuda.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Measure every defense under the worst attack of the suite (per sample, every attacker set of t parties)
    beside the vote's certified floor, run the per-attack grid, and write the robustness report."""

    def run() -> None:
        from copur.evaluation.evaluate import EvalConfig, run_grid
        from copur.evaluation.results_report import write_report
        from copur.science.bundle import load_bundle
        from copur.science.defenses import DEFENSES
        from copur.science.device import resolve_device

        unknown = [d for d in defense or () if d not in DEFENSES]
        if unknown:
            raise ConfigError(f"unknown defense '{unknown[0]}' (known: {', '.join(DEFENSES)})")
        others = [_read_report(path) for path in with_report or ()]
        config = EvalConfig(
            quick=quick,
            max_samples=samples,
            seed=seed,
            defenses=tuple(defense or DEFENSES),
            suite=suite,
            suite_samples=suite_samples if suite_samples is not None else (48 if quick else 200),
            search=search if search is not None else (8 if quick else 32),
            suite_steps=steps if steps is not None else (10 if quick else 50),
            liars=_int_list("--liars", liars) if liars else ((0, 1, 2) if quick else (0, 1, 2, 3)),
            max_sets=_max_sets(max_sets) if max_sets else ({2: 3} if quick else {3: 5}),
            suite_attacks=tuple(suite_attack or ()),
        )
        report = run_grid(load_bundle(bundle), config, device=resolve_device(device), progress=progress)
        report["command"] = shlex.join(_argv(sys.argv, "evaluate"))
        md = write_report(report, out, markdown_copy=markdown, others=others)
        typer.echo(f"report written to {md}")

    _guard(run)


def _argv(argv: list[str], command: str) -> list[str]:
    """The command line as typed, from the subcommand on, behind ``copur``."""
    rest = argv[argv.index(command) :] if command in argv else [command]
    return ["copur", *rest]


def _int_list(option: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated integers, got {text!r}") from None
    if any(v < 0 for v in values):
        raise ConfigError(f"{option} must be >= 0, got {text!r}")
    return values


def _max_sets(items: list[str]) -> dict[int, int]:
    out = {}
    for item in items:
        t, sep, n = item.partition("=")
        if not sep:
            raise ConfigError(f"--max-sets takes T=N (e.g. 3=5), got {item!r}")
        key, value = _int_list("--max-sets", f"{t},{n}")
        if value < 1:
            raise ConfigError(f"--max-sets needs at least one set, got {item!r}")
        out[key] = value
    return out


def _read_report(path: Path) -> dict[str, Any]:
    """Another data set's ``results.json`` (with the suite); ``source``: its results.md beside it."""
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--with {path}: no such file (run `copur evaluate` for that bundle first)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--with {path}: not a JSON file ({exc.msg})") from None
    if not isinstance(report, dict) or "worst_of_suite" not in report:
        raise ConfigError(f"--with {path}: not an evaluation report with the worst of the suite")
    report["source"] = str(path.parent / "results.md")
    return report


@app.command()
def party(
    bundle: Annotated[Path, typer.Option(help="Model bundle directory (only this party's file is read).")],
    party: Annotated[int, typer.Option("--party", help="This party's index.")],
    port: Annotated[int, typer.Option(help="gRPC port.")],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    data_dir: Annotated[str | None, typer.Option(help="Override the data set's directory.")] = None,
    max_ids: Annotated[int, typer.Option(help="Most sample ids one Embed call may ask for.")] = 65536,
    tls_mode: Annotated[str, typer.Option(envvar="COPUR_TLS_MODE", help=TLS_MODE_HELP)] = "mtls",
    tls_dir: Annotated[Path, typer.Option(envvar="COPUR_TLS_DIR", help=TLS_DIR_HELP)] = Path("runs/certs"),
) -> None:
    """Serve one party: gRPC Embed over its own feature columns and extractor (mTLS as party-<i>)."""

    def run() -> None:
        from copur.roles.party import serve_party
        from copur.transport.tls.credentials import process_identity
        from copur.transport.topology import service_name

        tls = process_identity(tls_mode, tls_dir, service_name("party", party), host)
        _logging()
        serve_party(bundle=bundle, party=party, host=host, port=port, data_dir=data_dir, max_ids=max_ids, tls=tls)

    _guard(run)


@app.command()
def adversary(
    upstream: Annotated[str, typer.Option(help="HOST:PORT of the real party it sits in front of.")],
    port: Annotated[int, typer.Option(help="gRPC port (the party protocol).")],
    bundle: Annotated[
        Path,
        typer.Option(help="Model bundle (head, AE and calibration for pgd/adaptive/sia; split for donors)."),
    ],
    control_port: Annotated[int, typer.Option(help="HTTP control port (PUT/GET /v1/policy).")] = 8091,
    party: Annotated[
        int | None, typer.Option(help="Index of the party it impersonates (default: ask upstream).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    policy: Annotated[
        str,
        typer.Option(
            help="Initial attack, without parameters: none, flip, noise, replace, zero, drop, pgd, adaptive, sia "
            "(runner-up, against a local simulation of the fusion center). mimic needs a donor (a sample id or "
            "a class): put it in force with PUT /v1/policy."
        ),
    ] = "none",
    data_dir: Annotated[
        str | None, typer.Option(help="Override the data set's directory (its labels pick mimic/sia donors).")
    ] = None,
    tls_mode: Annotated[str, typer.Option(envvar="COPUR_TLS_MODE", help=TLS_MODE_HELP)] = "mtls",
    tls_dir: Annotated[Path, typer.Option(envvar="COPUR_TLS_DIR", help=TLS_DIR_HELP)] = Path("runs/certs"),
    auth_mode: Annotated[
        str, typer.Option(envvar="COPUR_AUTH_MODE", help="keys: the control endpoint demands an admin key; none.")
    ] = "keys",
    api_keys_file: Annotated[
        Path, typer.Option(envvar="COPUR_API_KEYS_FILE", help="The API keys file ($COPUR_API_KEYS wins if set).")
    ] = Path("runs/certs/api-keys.json"),
) -> None:
    """Serve a compromised party: forward to the real one, corrupt its answers by a policy switched live
    (mTLS as adversary-<party> on both sides; the upstream must present party-<party>'s certificate).
    mimic sends the party's own blocks of a donor sample (by id, or the lowest validation id of a class,
    fetched from the upstream): two adversaries given the same donor collude. sia aims at the runner-up
    class of a local simulation of the copur defense."""

    def run() -> None:
        from pydantic import ValidationError

        from copur.roles.adversary import Policy, serve_adversary
        from copur.roles.adversary.policy import policy_error
        from copur.transport.auth.guard import load_authenticator
        from copur.transport.tls.credentials import process_identity
        from copur.transport.topology import service_name

        if party is None and tls_mode != "plaintext":
            raise ConfigError("--party is required with mTLS: it picks the certificate adversary-<party>")
        tls = process_identity(tls_mode, tls_dir, None if party is None else service_name("adversary", party), host)

        try:
            initial = Policy(attack=policy)
        except ValidationError as exc:
            raise ConfigError(f"--policy: {policy_error(exc.errors())}") from None
        _logging()
        serve_adversary(
            upstream=upstream,
            bundle=bundle,
            party=party,
            host=host,
            port=port,
            control_port=control_port,
            policy=initial,
            tls=tls,
            auth=load_authenticator(auth_mode, api_keys_file),
            data_dir=data_dir,
        )

    _guard(run)


@app.command()
def fusion(
    config: Annotated[Path, typer.Option(help="Cluster topology file (e.g. deploy/cluster.yaml).")],
) -> None:
    """Serve the fusion center: HTTP (FastAPI) and gRPC front doors, batching, the defense worker."""

    def run() -> None:
        from copur.roles.fusion import serve_fusion

        _logging()
        serve_fusion(config)

    _guard(run)


@app.command()
def probe(
    grpc_target: Annotated[str | None, typer.Option("--grpc", help="HOST:PORT of a gRPC server.")] = None,
    http_url: Annotated[str | None, typer.Option("--http", help="URL to GET.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 2.0,
    tls_dir: Annotated[
        Path | None, typer.Option(envvar="COPUR_TLS_DIR", help=TLS_DIR_HELP + " Plaintext when not given.")
    ] = None,
    tls_name: Annotated[str, typer.Option(help="Whose key pair the gRPC probe presents (with --tls-dir).")] = "client",
) -> None:
    """Health probe for containers: exit 0 when grpc.health.v1 says SERVING, or the URL answers 2xx."""
    if grpc_target is None and http_url is None:
        typer.echo("error: give --grpc HOST:PORT or --http URL", err=True)
        raise typer.Exit(code=2)

    def check() -> bool:
        from copur.transport.probe import probe_grpc, probe_http
        from copur.transport.tls.credentials import load_identity

        tls = load_identity(tls_dir, tls_name) if tls_dir is not None and grpc_target is not None else None
        return (grpc_target is None or probe_grpc(grpc_target, timeout, tls)) and (
            http_url is None or probe_http(http_url, timeout)
        )

    raise typer.Exit(code=0 if _guard(check) else 1)


@app.command()
def up(
    config: Annotated[Path, typer.Option(help="Cluster topology file.")] = Path("deploy/cluster.yaml"),
    log_dir: Annotated[Path, typer.Option(help="Where each process logs, and the cluster state file.")] = Path(
        "runs/cluster"
    ),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every process to be ready.")] = 180.0,
) -> None:
    """Start every process of the topology on this machine, wait until ready, watch them; Ctrl-C stops all."""

    def run() -> None:
        import signal
        import threading

        from copur.operations.launcher import Cluster
        from copur.transport.topology import load_topology

        topology = load_topology(config)
        cluster = Cluster(topology, config_path=config, log_dir=log_dir)
        typer.echo(f"starting {len(cluster.procs)} processes (logs in {log_dir}/)", err=True)
        cluster.start(timeout)
        state = log_dir / "cluster.json"
        cluster.write_state(state)
        typer.echo(
            f"fusion center   {cluster.fusion_url}  (docs {cluster.fusion_url}/docs, gRPC {cluster.fusion_grpc})"
        )
        for adv in topology.adversaries:
            typer.echo(f"adversary p{adv.party}    {cluster.control_url(adv.party)}/v1/policy")
        if topology.auth.mode == "keys":
            typer.echo(f"API keys        {topology.auth.keys_file} (development keys: its keys/ folder)")
        typer.echo("cluster ready (Ctrl-C or `copur down` stops it)")
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        try:
            while not done.wait(0.5):
                for name, code in cluster.dead():
                    typer.echo(f"process {name} exited with code {code} (log: {log_dir / (name + '.log')})", err=True)
        finally:
            cluster.stop()
            state.unlink(missing_ok=True)
            typer.echo("cluster stopped", err=True)

    _guard(run)


@app.command()
def down(
    log_dir: Annotated[Path, typer.Option(help="The log directory `copur up` was given.")] = Path("runs/cluster"),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the cluster to stop.")] = 30.0,
) -> None:
    """Stop a cluster started by `copur up`."""

    def run() -> None:
        import os
        import signal
        import time

        state = log_dir / "cluster.json"
        if not state.is_file():
            raise ConfigError(f"no running cluster recorded in {state}")
        info = json.loads(state.read_text())
        pids = [int(info["up_pid"]), *(int(p) for p in info["pids"].values())]

        def alive(pid: int) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            status = Path(f"/proc/{pid}/status")  # a zombie waiting for its parent has stopped running
            return not (status.is_file() and "State:\tZ" in status.read_text())

        if alive(pids[0]):
            os.kill(pids[0], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in (p for p in pids if alive(p)):
            os.kill(pid, signal.SIGKILL)
        state.unlink(missing_ok=True)
        typer.echo("cluster stopped")

    _guard(run)


@app.command()
def demo(
    config: Annotated[Path, typer.Option(help="Cluster topology file.")] = Path("deploy/cluster.yaml"),
    log_dir: Annotated[Path, typer.Option(help="Where each process logs.")] = Path("runs/demo"),
    samples: Annotated[int, typer.Option(help="How many samples to predict.")] = 200,
) -> None:
    """Bring the cluster up, predict, flip one party through the adversary, predict again, shut down."""

    def run() -> None:
        from copur.operations.demo import run_demo

        run_demo(config, log_dir=log_dir, samples=samples, say=typer.echo)

    _guard(run)


@app.command()
def predict(
    ids: Annotated[list[int], typer.Argument(help="Sample ids, e.g. `--ids 1 2 3` or just `1 2 3`.")],
    _ids_marker: Annotated[bool, typer.Option("--ids", help="Optional marker: the sample ids follow.")] = False,
    url: Annotated[str, typer.Option(help="Fusion center HTTP URL.")] = "http://127.0.0.1:8080",
    defense: Annotated[str | None, typer.Option(help="Defense (default: the fusion center's).")] = None,
    certify: Annotated[bool, typer.Option(help="Ask for the defense's certificate.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON instead of a table.")] = False,
    grpc_target: Annotated[str | None, typer.Option("--grpc", help="Use gRPC at HOST:PORT instead of HTTP.")] = None,
    tls_dir: Annotated[
        Path | None,
        typer.Option(envvar="COPUR_TLS_DIR", help="With --grpc: mTLS with DIR/ca.pem, client.pem, client-key.pem."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="COPUR_API_KEY", help="API key with scope predict (sent as a Bearer token).")
    ] = None,
) -> None:
    """Ask the fusion center for predictions and print a table (or --json)."""
    from copur_client import GrpcTls, predict_command

    tls = GrpcTls.from_dir(tls_dir) if tls_dir is not None else None
    code, text = predict_command(url, list(ids), defense, certify, as_json, grpc_target, tls, api_key=api_key)
    typer.echo(text, err=code != 0)
    raise typer.Exit(code=code)


app.add_typer(bench_app, name="bench")
app.add_typer(certs_app, name="certs")
app.add_typer(keys_app, name="keys")

scenario_app = typer.Typer(
    help="Scripted attack scenarios against a running (or self-started) cluster.", no_args_is_help=True
)
app.add_typer(scenario_app, name="scenario")


@scenario_app.command("run")
def scenario_run(
    file: Annotated[Path, typer.Argument(help="Scenario YAML (see clients/scenarios/).")],
    out: Annotated[Path, typer.Option(help="Directory for report.json, report.md and index.html.")] = Path(
        "runs/report"
    ),
    url: Annotated[str | None, typer.Option(help="Fusion center URL of a running cluster.")] = None,
    up: Annotated[bool, typer.Option("--up", help="Start the cluster of --config first, stop it after.")] = False,
    config: Annotated[Path, typer.Option(help="Topology (adversary control ports; what --up starts).")] = Path(
        "deploy/cluster-scenarios.yaml"
    ),
    bundle: Annotated[
        str | None, typer.Option(help="Bundle for ground-truth labels (default: the topology's).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    api_key: Annotated[
        str | None, typer.Option(help="Key for predictions (default: --up's development key, else $COPUR_API_KEY).")
    ] = None,
    admin_key: Annotated[
        str | None,
        typer.Option(help="Key for policy changes (default: --up's development key, else $COPUR_ADMIN_KEY)."),
    ] = None,
) -> None:
    """Run a scenario's steps (policies, faults, predictions, expectations) and write the report."""
    from copur.evaluation.scenarios.runner import scenario_command

    code = scenario_command(
        file,
        url=url,
        up=up,
        config=config,
        bundle=bundle,
        out=out,
        progress=progress,
        api_key=api_key,
        admin_key=admin_key,
    )
    raise typer.Exit(code)


def _logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="copur")
