"""The three training stages (docs/ARCHITECTURE.md, "Training"), seeded, with progress bars.

1. joint VFL training of the extractors f_i and the head g (cross-entropy);
2. subspace learning: the AE on clean embeddings of the training set, extractors frozen, with random
   block masking so that the encoder learns to impute hidden parties from the others;
3. the head retrained on AE outputs D(E(h)), everything else frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from copur.science.config import TrainConfig
from copur.science.data import VerticalDataset
from copur.science.data.base import stratified_split
from copur.science.models import ModelSet, build_models

__all__ = ["TrainResult", "block_mask", "train_all"]


@dataclass
class TrainResult:
    """Trained networks, clean metrics, and the ids actually fitted on / held out for
    calibration."""

    models: ModelSet
    metrics: dict[str, float]
    fit_ids: np.ndarray
    val_ids: np.ndarray


def _batches(n: int, size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    yield from perm.split(size)


def block_mask(
    batch: int, parties: int, *, prob: float, max_hidden: int, gen: torch.Generator
) -> torch.Tensor:
    """(batch, parties) 0/1 keep-mask: with probability ``prob`` a row hides 1..max_hidden random
    parties."""
    keep = torch.ones(batch, parties)
    max_hidden = min(max_hidden, parties - 1)
    if max_hidden < 1:
        return keep
    masked = torch.rand(batch, generator=gen) < prob
    hidden = torch.randint(1, max_hidden + 1, (batch,), generator=gen)
    order = torch.rand(batch, parties, generator=gen).argsort(dim=1)
    rank = order.argsort(dim=1)
    keep[masked.unsqueeze(1) & (rank < hidden.unsqueeze(1))] = 0.0
    return keep


def _fit(
    params: list[nn.Parameter],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    n: int,
    epochs: int,
    lr: float,
    config: TrainConfig,
    gen: torch.Generator,
    desc: str,
    progress: bool,
) -> float:
    opt = torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)
    last = float("nan")
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=True)
    for _ in bar:
        total = 0.0
        for idx in _batches(n, config.batch_size, gen):
            loss = loss_fn(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        last = total / n
        bar.set_postfix(loss=f"{last:.4f}")
    return last


@torch.no_grad()
def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == y).float().mean())


def train_all(
    data: VerticalDataset, config: TrainConfig, *, device: torch.device, progress: bool = True
) -> TrainResult:
    """Run the three stages on ``data``'s training split; report clean test metrics."""
    gen = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        models = build_models(
            party_dims=data.party_dims, num_classes=data.num_classes, config=config.model
        )
    models.to(device)
    # Hold out a stratified validation part of the training split (for calibration, never fitted
    # on).
    pos_fit, pos_val = stratified_split(
        data.labels[data.train_ids], test_fraction=config.val_fraction, seed=config.seed
    )
    fit_ids, val_ids = data.train_ids[pos_fit], data.train_ids[pos_val]
    xs_tr = [torch.as_tensor(x, device=device) for x in data.party_rows(fit_ids)]
    xs_te = [torch.as_tensor(x, device=device) for x in data.party_rows(data.test_ids)]
    y_tr = torch.as_tensor(data.labels[fit_ids], device=device)
    y_te = torch.as_tensor(data.labels[data.test_ids], device=device)
    for f, x in zip(models.extractors, xs_tr, strict=True):
        f.set_standardization(x.mean(dim=0), x.std(dim=0))
    ce = nn.CrossEntropyLoss()
    n, m, e = len(y_tr), data.num_parties, config.model.emb_dim
    hide = config.mask_max(m)

    # Stage 1: extractors and head end to end, with whole parties dropped at random (party dropout),
    # so that
    # every embedding carries information on its own and the head tolerates missing parties.
    def vfl_loss(i: torch.Tensor) -> torch.Tensor:
        keep = block_mask(len(i), m, prob=config.vfl_mask_prob, max_hidden=hide, gen=gen).to(device)
        return ce(
            models.head_vfl(models.embed([x[i] for x in xs_tr]) * keep.repeat_interleave(e, dim=1)),
            y_tr[i],
        )

    vfl_params = [p for f in models.extractors for p in f.parameters()] + list(
        models.head_vfl.parameters()
    )
    _fit(
        vfl_params,
        vfl_loss,
        n=n,
        epochs=config.vfl_epochs,
        lr=config.vfl_lr,
        config=config,
        gen=gen,
        desc="stage 1/3 joint VFL",
        progress=progress,
    )
    models.eval()
    with torch.no_grad():
        h_tr, h_te = models.embed(xs_tr), models.embed(xs_te)

    # Stage 2: block-masked AE on frozen clean embeddings.
    mse = nn.MSELoss()

    def ae_loss(i: torch.Tensor) -> torch.Tensor:
        keep = block_mask(len(i), m, prob=config.ae_mask_prob, max_hidden=hide, gen=gen).to(device)
        return mse(models.autoencoder(h_tr[i] * keep.repeat_interleave(e, dim=1)), h_tr[i])

    models.autoencoder.train()
    _fit(
        list(models.autoencoder.parameters()),
        ae_loss,
        n=n,
        epochs=config.ae_epochs,
        lr=config.ae_lr,
        config=config,
        gen=gen,
        desc="stage 2/3 subspace AE",
        progress=progress,
    )
    models.autoencoder.eval()
    with torch.no_grad():
        r_tr, r_te = models.autoencoder(h_tr), models.autoencoder(h_te)

    # Stage 3: head retrained on AE outputs (of block-masked inputs too), starting from the stage-1
    # head.
    models.head_ae.load_state_dict(models.head_vfl.state_dict())
    models.head_ae.train()

    def head_loss(i: torch.Tensor) -> torch.Tensor:
        keep = block_mask(len(i), m, prob=config.head_mask_prob, max_hidden=hide, gen=gen).to(
            device
        )
        with torch.no_grad():
            r = models.autoencoder(h_tr[i] * keep.repeat_interleave(e, dim=1))
        return ce(models.head_ae(r), y_tr[i])

    _fit(
        list(models.head_ae.parameters()),
        head_loss,
        n=n,
        epochs=config.head_epochs,
        lr=config.head_lr,
        config=config,
        gen=gen,
        desc="stage 3/3 head on AE outputs",
        progress=progress,
    )
    models.eval()
    with torch.no_grad():
        metrics = {
            "clean_test_accuracy_head": _accuracy(models.head_vfl(h_te), y_te),
            "clean_test_accuracy_ae_head": _accuracy(models.head_ae(r_te), y_te),
            "clean_train_accuracy_ae_head": _accuracy(models.head_ae(r_tr), y_tr),
            "ae_test_relative_error": float((r_te - h_te).norm() / h_te.norm()),
        }
    return TrainResult(models=models.to("cpu"), metrics=metrics, fit_ids=fit_ids, val_ids=val_ids)
