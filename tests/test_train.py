import torch

from copur.science.bundle import Bundle
from copur.science.config import ModelConfig, TrainConfig
from copur.science.data import DatasetSpec, load_dataset
from copur.science.train import block_mask, train_all


def test_default_mfeat_training_reaches_target_accuracy(mfeat_bundle: Bundle) -> None:
    # The bar: both the VFL head and the head on AE outputs >= 0.97 on the clean test set.
    metrics = mfeat_bundle.manifest.metrics

    assert metrics["clean_test_accuracy_head"] >= 0.97
    assert metrics["clean_test_accuracy_ae_head"] >= 0.97


def test_manifest_metrics_match_a_recomputation(mfeat_bundle: Bundle) -> None:
    data = load_dataset(DatasetSpec(name="mfeat", seed=0))
    ids = mfeat_bundle.test_ids
    xs = [torch.as_tensor(x) for x in data.party_rows(ids)]
    y = torch.as_tensor(data.labels[ids])

    with torch.no_grad():
        h = mfeat_bundle.models.embed(xs)
        acc_ae = (
            (mfeat_bundle.models.head_ae(mfeat_bundle.models.autoencoder(h)).argmax(1) == y)
            .float()
            .mean()
        )

    assert abs(float(acc_ae) - mfeat_bundle.manifest.metrics["clean_test_accuracy_ae_head"]) < 1e-6


def test_training_is_seeded() -> None:
    data = load_dataset(DatasetSpec(name="digits", seed=0))
    config = TrainConfig(
        seed=3, vfl_epochs=2, ae_epochs=2, head_epochs=1, model=ModelConfig(emb_dim=8, ae_code=8)
    )

    a = train_all(data, config, device=torch.device("cpu"), progress=False)
    b = train_all(data, config, device=torch.device("cpu"), progress=False)

    assert a.metrics == b.metrics
    assert torch.equal(a.models.head_ae.net[0].weight, b.models.head_ae.net[0].weight)


def test_block_mask_hides_between_one_and_max_parties() -> None:
    gen = torch.Generator().manual_seed(0)

    keep = block_mask(4000, 6, prob=0.5, max_hidden=2, gen=gen)

    hidden = (keep == 0).sum(dim=1)
    assert set(hidden.unique().tolist()) == {0, 1, 2}
    assert 0.45 < float((hidden > 0).float().mean()) < 0.55
