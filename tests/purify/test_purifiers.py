import pytest
import torch

from copur.science.defenses import Engine
from copur.science.purify import PURIFIERS, flag_thresholds

M = 6


def _flip(h: torch.Tensor, party: int, amp: float = 10.0) -> torch.Tensor:
    out = h.clone()
    out[:, party * 16 : (party + 1) * 16] *= -amp
    return out


def test_copur_on_clean_input_is_close_to_the_ae_output(engine: Engine, test_batch) -> None:
    h, _ = test_batch
    full = torch.ones(len(h), M, dtype=torch.bool)

    purified = engine.purifier("copur").purify(h, full)

    with torch.no_grad():
        ae = engine.models.autoencoder(h)
    # Close to the AE output (nearer than the AE output is to h), and a closer fit of h than AE(h).
    to_ae = (purified.h - ae).norm(dim=1) / ae.norm(dim=1)
    ae_to_h = (ae - h).norm(dim=1) / h.norm(dim=1)
    assert float(to_ae.median()) < float(ae_to_h.median()) < 0.3
    assert float((purified.h - h).norm()) <= float((ae - h).norm())
    same = engine.models.head_ae(purified.h).argmax(1) == engine.models.head_ae(ae).argmax(1)
    assert float(same.float().mean()) >= 0.97
    assert float(purified.flagged.float().mean()) < 0.02


@pytest.mark.parametrize("name", ["copur", "copur-l21"])
@pytest.mark.parametrize("party", range(M))
def test_copur_recovers_from_one_flipped_party_and_flags_it(
    engine: Engine, test_batch, party: int, name: str
) -> None:
    h, y = test_batch
    full = torch.ones(len(h), M, dtype=torch.bool)

    purified = engine.purifier(name).purify(_flip(h, party), full)

    accuracy = (engine.models.head_ae(purified.h).argmax(1) == y).float().mean()
    assert float(accuracy) >= 0.9
    assert float(purified.flagged[:, party].float().mean()) >= 0.95
    others = torch.cat([purified.flagged[:, :party], purified.flagged[:, party + 1 :]], dim=1)
    assert float(others.float().mean()) < 0.02


@pytest.mark.parametrize("name", sorted(PURIFIERS))
def test_unobserved_blocks_have_no_influence(engine: Engine, test_batch, name: str) -> None:
    h, _ = test_batch
    h = h[:20]
    observed = torch.ones(len(h), M, dtype=torch.bool)
    observed[:, 3] = False
    garbage = h.clone()
    garbage[:, 48:64] = 1e6

    a = engine.purifier(name).purify(h, observed)
    b = engine.purifier(name).purify(garbage, observed)

    torch.testing.assert_close(a.h, b.h)
    assert torch.all(a.scores[:, 3] == 0) and not a.flagged[:, 3].any()


@pytest.mark.parametrize("name", sorted(PURIFIERS))
def test_copur_rows_are_independent_of_the_batch(engine: Engine, test_batch, name: str) -> None:
    h, _ = test_batch
    h = _flip(h[:8], 2)
    full = torch.ones(len(h), M, dtype=torch.bool)

    batched = engine.purifier(name).purify(h, full).h
    single = torch.cat(
        [engine.purifier(name).purify(h[i : i + 1], full[:1]).h for i in range(len(h))]
    )

    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-4)


def test_reference_stops_early_per_sample(engine: Engine, test_batch) -> None:
    # With a huge stop threshold every sample stops at once: step 1 is then the identity on AE(h).
    from copur.science.purify import ReferenceConfig, ReferencePurifier

    h, _ = test_batch
    ref = engine.purifier("copur-ref")
    stopped = ReferencePurifier(
        autoencoder=engine.models.autoencoder,
        num_parties=M,
        block_scale=ref.block_scale,
        config=ReferenceConfig(stop_grad=1e9, k2=0),
    )
    full = torch.ones(len(h), M, dtype=torch.bool)

    out = stopped.purify(h, full).h

    with torch.no_grad():
        expected = engine.models.autoencoder(
            engine.models.autoencoder(engine.models.autoencoder(h))
        )
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("name", sorted(PURIFIERS))
def test_differentiable_mode_passes_gradients_to_the_input(
    engine: Engine, test_batch, name: str
) -> None:
    h, _ = test_batch
    x = h[:4].clone().requires_grad_(True)
    full = torch.ones(4, M, dtype=torch.bool)

    out = engine.purifier(name).purify(x, full, differentiable=True).h
    (grad,) = torch.autograd.grad(out.sum(), x)

    assert grad.abs().sum() > 0


def test_threshold_is_the_requested_quantile_of_clean_scores(engine: Engine, test_batch) -> None:
    h, _ = test_batch
    purifier = engine.purifier("copur")
    full = torch.ones(len(h), M, dtype=torch.bool)

    thresholds = flag_thresholds(purifier, h, quantile=0.9, factor=1.0)

    saved, purifier.threshold = purifier.threshold, None
    scores = purifier.purify(h, full).scores
    purifier.threshold = saved
    above = (scores > thresholds).float().mean(dim=0)
    assert thresholds.shape == (M,)
    assert torch.all(above <= 0.11) and torch.all(above >= 0.05)
