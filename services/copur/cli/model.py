"""``copur train``, ``copur info``, ``copur calibrate``: making and inspecting a model bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from copur.operations.clikit import guard as _guard

__all__ = ["calibrate", "info", "train"]


def train(
    out: Annotated[Path, typer.Option(help="Directory to write the model bundle into.")],
    dataset: Annotated[
        str, typer.Option(help="Data set: mfeat (embedded), digits, nus-wide, extrasensory, csv.")
    ] = "mfeat",
    data_dir: Annotated[
        str | None, typer.Option(help="Where the data set's files are (not for mfeat/digits).")
    ] = None,
    divisions: Annotated[
        list[str] | None,
        typer.Option(
            "--divisions",
            help="Column division per feature table, e.g. '0 360 634'; repeat for several tables.",
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            help="Label column (csv, extrasensory) or comma-separated concepts (nus-wide)."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed for the split, initialisation and shuffling.")
    ] = 0,
    split_seed: Annotated[
        int | None,
        typer.Option(
            help="Seed for the train/test split alone (default: --seed): retrain with another "
            "--seed on the same split, e.g. the next bundle of a rolling upgrade."
        ),
    ] = None,
    test_fraction: Annotated[
        float,
        typer.Option(
            help="Share of samples held out for testing (where the data set has no published "
            "split)."
        ),
    ] = 0.2,
    vfl_epochs: Annotated[int, typer.Option(help="Stage 1 (joint VFL) epochs.")] = 100,
    ae_epochs: Annotated[int, typer.Option(help="Stage 2 (subspace autoencoder) epochs.")] = 300,
    head_epochs: Annotated[int, typer.Option(help="Stage 3 (head on AE outputs) epochs.")] = 30,
    emb_dim: Annotated[int, typer.Option(help="Embedding width e of each party.")] = 16,
    ae_code: Annotated[
        int, typer.Option(help="AE code size; must be well below parties x emb_dim.")
    ] = 32,
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
            seed=seed if split_seed is None else split_seed,
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
        f"bundle id    {manifest.bundle_id}  (what parties and predictions name)",
        f"data set     {manifest.dataset['name']}  ({manifest.num_samples} samples, "
        f"{manifest.num_classes} classes)",
        f"parties      {manifest.num_parties}",
    ]
    for i, (name, dim) in enumerate(zip(manifest.party_names, manifest.party_dims, strict=True)):
        lines.append(
            f"  party {i}    {name:<14} {dim:>5} features -> {manifest.model['emb_dim']}-dim "
            "embedding"
        )
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


def info(
    bundle: Annotated[Path, typer.Argument(help="Model bundle directory.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole manifest as JSON.")
    ] = False,
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


def calibrate(
    bundle: Annotated[Path, typer.Argument(help="Model bundle directory.")],
    quantile: Annotated[
        float, typer.Option(help="Quantile of clean validation residuals per party.")
    ] = 0.99,
    factor: Annotated[float, typer.Option(help="Flag threshold = factor x that quantile.")] = 3.0,
) -> None:
    """(Re)compute a bundle's block scales and flag thresholds on its clean validation split."""

    def run() -> None:
        from copur.science.calibration import calibrate_bundle

        cal = calibrate_bundle(bundle, quantile=quantile, factor=factor)
        for name, thr in cal.thresholds.items():
            typer.echo(f"{name:<10} thresholds " + " ".join(f"{t:.3f}" for t in thr))

    _guard(run)
