"""Throughput / latency benchmark of the batched purifiers ``copur-ref``, ``copur-l21`` and
``copur``.

Shapes: ``nus-wide`` (an AE 240-200-150-200-240 with seeded orthogonal weights, M=4 parties of
e=60: the shape of the public reference implementation's NUS-WIDE experiment; orthogonal weights
give the Jacobian the unit gain of a trained AE, so ``copur-ref`` runs its 100 + 3 steps as on
real data, where PyTorch's default initialisation would shrink every gradient under the
early-stop threshold after one step) with inputs AE(noise) + 10 % noise, and for ``copur`` a
consistency bank of ``NUS_BANK_ROWS`` more such rows (the most a calibrated bundle keeps, so the
bank comparison is timed at its largest); and ``mfeat`` (a bundle's real AE, its calibration, its
consistency bank and its test embeddings, tiled up to the largest batch size).

Baselines, measured in the same run at the NUS-WIDE shape: ``copur-ref`` one sample at a time
with its default analytic-gradient path, and one sample at a time with autograd per step (the
public code's formulation). Two FLOP counts per record: ``gflops`` is the algorithm's nominal
work per second, counted from what each purifier reports in ``last_cost`` (rows through the AE /
encoder / decoder forward and input-gradient backward, every layer as trained; early stops
counted), an effective rate; and ``gflops_executed`` the matmul FLOPs the call really ran
(torch's FlopCounterMode) per second, the rate to hold against the measured matmul peak. The
result is a :class:`~copur.evaluation.bench.models.PurifierBench`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from copur.evaluation.bench.machine import machine_info, usable_cores
from copur.evaluation.bench.models import OneSampleLoop, PurifierBench, PurifierRecord, write_bench
from copur.science.calibration import BANK_ROWS, bundle_bank
from copur.science.models import AutoEncoder
from copur.science.purify import (
    PURIFIERS,
    Bank,
    Purifier,
    ReferenceConfig,
    block_scales,
    flag_thresholds,
    make_purifier,
)
from copur.science.purify.bank import nearest_unit

__all__ = ["bench_purifier", "nus_autoencoder", "nus_inputs", "write_purifier_bench"]

PURIFIER_NAMES = ("copur-ref", "copur-l21", "copur")
#: the NUS-WIDE shape's bank: as many rows as a calibrated bundle keeps at most
NUS_BANK_ROWS = BANK_ROWS
NUS_PARTIES, NUS_EMB, NUS_HIDDEN, NUS_CODE, NUS_SLOPE = 4, 60, 200, 150, 0.8
CALIBRATION_SAMPLES = 512
LOOP_SAMPLES = 32


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _linear_macs(net: torch.nn.Module) -> int:
    return sum(
        m.in_features * m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)
    )


def _flops(purifier: Purifier) -> float | None:
    """FLOPs of the last ``purify`` call: 2 per MAC, forward + input-gradient backward (= forward
    cost)."""
    cost: dict[str, int] | None = getattr(purifier, "last_cost", None)
    if not cost:
        return None
    ae = purifier.ae
    enc, dec = _linear_macs(ae.encoder), _linear_macs(ae.decoder)
    if "ae_fwd_rows" in cost:
        return 2.0 * (enc + dec) * (cost["ae_fwd_rows"] + cost["ae_bwd_rows"])
    rows = enc * cost.get("enc_fwd_rows", 0) + dec * (
        cost.get("dec_fwd_rows", 0) + cost.get("dec_bwd_rows", 0)
    )
    return 2.0 * rows + cost.get("bank_flops", 0)


def _executed_flops(fn: Callable[[], Any]) -> float:
    """The matmul FLOPs one call of ``fn`` executes, counted by torch's FlopCounterMode (the same
    work as a timed call: the inputs, and so the early stops, are the same)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _timed(fn: Callable[[], Any], device: torch.device, min_seconds: float) -> tuple[float, int]:
    """Warm up once, then repeat ``fn`` until ``min_seconds`` have passed; (seconds per call,
    calls)."""
    fn()
    _sync(device)
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        _sync(device)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls, calls


def matmul_peak_gflops(
    device: torch.device, *, n: int = 2048, repeats: int = 5, min_seconds: float = 0.2
) -> float:
    """Measured GFLOP/s of an n x n float32 matmul on ``device``: the best of ``repeats`` timings (a
    shared machine's neighbours only ever slow a timing down)."""
    with torch.inference_mode():
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        seconds = min(
            _timed(lambda: torch.mm(a, b), device, min_seconds)[0] for _ in range(repeats)
        )
    return 2.0 * n**3 / seconds / 1e9


def nus_autoencoder(seed: int = 0) -> AutoEncoder:
    """The NUS-WIDE-shaped AE of the bench: seeded orthogonal weights, zero biases, frozen."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ae = AutoEncoder(
            in_dim=NUS_PARTIES * NUS_EMB, hidden=NUS_HIDDEN, code=NUS_CODE, slope=NUS_SLOPE
        ).eval()
        with torch.no_grad():
            for layer in ae.modules():
                if isinstance(layer, torch.nn.Linear):
                    torch.nn.init.orthogonal_(layer.weight)
                    layer.bias.zero_()
    return ae.requires_grad_(False)


def nus_inputs(ae: AutoEncoder, samples: int, *, seed: int = 0, noise: float = 0.1) -> torch.Tensor:
    """AE(standard normal) plus ``noise`` x its standard deviation of Gaussian noise: near the
    manifold."""
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        h = ae(torch.randn(samples, ae.width, generator=gen))
        return (h + noise * h.std() * torch.randn(h.shape, generator=gen)).clone()


def _nus_setup(device: torch.device, samples: int) -> dict[str, Any]:
    ae = nus_autoencoder()
    h = nus_inputs(ae, samples)
    rows = nus_inputs(ae, NUS_BANK_ROWS, seed=1)
    scale = block_scales(h, NUS_PARTIES)
    unit = nearest_unit(h[:CALIBRATION_SAMPLES], rows, NUS_PARTIES, scale)
    bank = Bank(rows=rows, labels=torch.zeros(len(rows), dtype=torch.long), unit=unit).to(device)
    return {
        "ae": ae.to(device),
        "h": h.to(device),
        "parties": NUS_PARTIES,
        "scale": scale.to(device),
        "thresholds": None,
        "bank": bank,
    }


def _mfeat_setup(device: torch.device, bundle: str, samples: int) -> dict[str, Any]:
    from copur.science.bundle import load_bundle
    from copur.science.data import load_dataset

    loaded = load_bundle(bundle)
    if loaded.calibration is None:
        raise FileNotFoundError(f"bundle {bundle} has no calibration.json")
    data = load_dataset(loaded.manifest.dataset_spec)
    with torch.inference_mode():
        h = loaded.models.embed([torch.as_tensor(x) for x in data.party_rows(loaded.test_ids)])
    reps = -(-samples // len(h))
    h = h.repeat(reps, 1)[:samples]
    return {
        "ae": loaded.models.autoencoder.to(device).requires_grad_(False),
        "h": h.to(device),
        "parties": loaded.manifest.num_parties,
        "scale": torch.tensor(loaded.calibration.block_scale, device=device),
        "thresholds": {
            k: torch.tensor(v, device=device) for k, v in loaded.calibration.thresholds.items()
        },
        "test_samples": len(loaded.test_ids),
        "bank": bundle_bank(loaded).to(device),
    }


def _purifiers(setup: dict[str, Any]) -> dict[str, Purifier]:
    h, m = setup["h"], setup["parties"]
    scale = setup["scale"] if setup["scale"] is not None else block_scales(h, m)
    out = {}
    for name in PURIFIER_NAMES:
        bank = setup["bank"] if PURIFIERS[name].uses_bank else None
        purifier = make_purifier(
            name, autoencoder=setup["ae"], num_parties=m, block_scale=scale, bank=bank
        )
        if setup["thresholds"] is not None:
            purifier.threshold = setup["thresholds"][name]
        else:
            factor = purifier.flag_factor if purifier.flag_factor is not None else 3.0
            purifier.threshold = flag_thresholds(
                purifier, h[:CALIBRATION_SAMPLES], quantile=0.99, factor=factor
            )
        out[name] = purifier
    return out


def bench_purifier(
    *,
    device: torch.device,
    batch_sizes: Sequence[int] = (1, 8, 64, 512, 4096),
    bundle: str | None = "runs/mfeat",
    min_seconds: float = 1.0,
    progress: bool = True,
    threads: int | None = None,
) -> PurifierBench:
    """Samples/s, latency and achieved GFLOP/s of every purifier per shape and batch size.

    ``threads``: torch intra-op threads for the run (default: the cores this process may use),
    restored afterwards. The purifiers themselves drop to one thread for small batches.
    """
    device = torch.device(device)
    saved_threads = torch.get_num_threads()
    threads = threads or usable_cores()
    torch.set_num_threads(threads)
    try:
        return _bench(device, list(batch_sizes), bundle, min_seconds, progress, threads)
    finally:
        torch.set_num_threads(saved_threads)


def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)


def _bench(
    device: torch.device,
    batch_sizes: list[int],
    bundle: str | None,
    min_seconds: float,
    progress: bool,
    threads: int,
) -> PurifierBench:
    samples = max(batch_sizes)
    peak = matmul_peak_gflops(device)
    _log(progress, f"matmul peak: {peak:.1f} GFLOP/s ({threads} threads)")
    notes: list[str] = []
    setups: dict[str, dict[str, Any]] = {"nus-wide": _nus_setup(device, samples)}
    if bundle is None:
        notes.append("mfeat shape skipped: no bundle given")
    elif not (Path(bundle) / "manifest.json").exists():
        notes.append(f"mfeat shape skipped: bundle {bundle} not found")
    else:
        setups["mfeat"] = _mfeat_setup(device, bundle, samples)
        notes.append(
            f"mfeat inputs: the bundle's {setups['mfeat']['test_samples']} test embeddings, tiled "
            f"to {samples}"
        )
    for note in notes:
        _log(progress, note)

    records: list[PurifierRecord] = []
    nus_purifiers: dict[str, Purifier] = {}
    for shape, setup in setups.items():
        purifiers = _purifiers(setup)
        if shape == "nus-wide":
            nus_purifiers = purifiers
        h_all = setup["h"]
        for name, purifier in purifiers.items():
            for bs in batch_sizes:
                h = h_all[:bs]
                observed = torch.ones(len(h), setup["parties"], dtype=torch.bool, device=device)
                seconds, calls = _timed(partial(purifier.purify, h, observed), device, min_seconds)
                flops = _flops(purifier)
                cost = dict(getattr(purifier, "last_cost", {}) or {})
                executed = _executed_flops(partial(purifier.purify, h, observed))
                record = PurifierRecord(
                    purifier=name,
                    shape=shape,
                    device=str(device),
                    batch_size=bs,
                    samples_per_s=bs / seconds,
                    latency_ms=1e3 * seconds / bs,
                    batch_ms=1e3 * seconds,
                    gflops=flops / seconds / 1e9 if flops is not None else None,
                    flops_per_batch=flops,
                    gflops_executed=executed / seconds / 1e9,
                    executed_flops_per_batch=executed,
                    calls=calls,
                    cost=cost,
                )
                if "step1_row_iterations" in cost:
                    record.mean_step1_iterations = cost["step1_row_iterations"] / bs
                records.append(record)
                _log(
                    progress,
                    f"{name:9s} {shape:8s} batch {bs:5d}: {record.samples_per_s:10.1f} samples/s, "
                    f"{record.latency_ms:9.3f} ms/sample, {record.batch_ms:10.2f} ms/batch, "
                    f"{record.gflops or 0:7.2f} GFLOP/s nominal, "
                    f"{record.gflops_executed or 0:7.2f} executed",
                )

    # One-sample-at-a-time Python loops of copur-ref at the NUS shape over the same samples: the
    # default
    # (analytic-gradient) path, and autograd per step as the public code computes it.
    h_nus = setups["nus-wide"]["h"]
    ref = nus_purifiers["copur-ref"]
    ref_autograd = make_purifier(
        "copur-ref",
        autoencoder=ref.ae,
        num_parties=NUS_PARTIES,
        block_scale=ref.block_scale,
        threshold=ref.threshold,
        config=ReferenceConfig(analytic_grad=False),
    )
    loops = {
        "one_sample_loop": _one_sample_loop(ref, h_nus, device, min_seconds, "analytic (default)"),
        "one_sample_loop_autograd": _one_sample_loop(
            ref_autograd, h_nus, device, min_seconds, "autograd"
        ),
    }
    batched = [r for r in records if r.purifier == "copur-ref" and r.shape == "nus-wide"]
    best = max(batched, key=lambda r: r.samples_per_s)
    speedups = {key: best.samples_per_s / _rate(loop) for key, loop in loops.items()}
    for key, loop in loops.items():
        _log(
            progress,
            f"copur-ref one-sample loop, {loop.gradients} gradients (nus-wide, {loop.samples} "
            f"samples): {_rate(loop):.1f} samples/s; batched (batch {best.batch_size}) is "
            f"{speedups[key]:.1f}x faster",
        )
    return PurifierBench(
        machine=machine_info(device, threads),
        matmul_peak_gflops=peak,
        notes=notes,
        records=records,
        one_sample_loop=loops["one_sample_loop"],
        one_sample_loop_autograd=loops["one_sample_loop_autograd"],
        speedup_vs_one_sample_loop=speedups["one_sample_loop"],
        speedup_vs_one_sample_autograd_loop=speedups["one_sample_loop_autograd"],
        speedup_best_batch_size=best.batch_size,
    )


def _rate(loop: OneSampleLoop) -> float:
    assert loop.samples_per_s is not None  # set by _one_sample_loop
    return loop.samples_per_s


def _one_sample_loop(
    purifier: Purifier, h: torch.Tensor, device: torch.device, min_seconds: float, gradients: str
) -> OneSampleLoop:
    """``purifier`` called on one sample at a time over the first ``LOOP_SAMPLES`` rows of ``h``."""
    n = min(LOOP_SAMPLES, len(h))
    one = torch.ones(1, h.shape[1] // purifier.emb_dim, dtype=torch.bool, device=device)

    def loop() -> None:
        for i in range(n):
            purifier.purify(h[i : i + 1], one)

    seconds, calls = _timed(loop, device, min_seconds)
    return OneSampleLoop(
        purifier="copur-ref",
        shape="nus-wide",
        gradients=gradients,
        samples=n,
        samples_per_s=n / seconds,
        latency_ms=1e3 * seconds / n,
        calls=calls,
    )


def write_purifier_bench(result: PurifierBench, json_path: str | Path) -> Path:
    """Write ``result`` as indented JSON (parent folders created); returns the path."""
    return write_bench(result, json_path)
