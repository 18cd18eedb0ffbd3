from statistics import NormalDist

import pytest
import torch

from copur.errors import ConfigError
from copur.science.certify.smoothing import (
    ABSTAIN,
    SmoothingConfig,
    sample_counts,
    smoothed_certify,
    smoothed_predict,
)
from copur.science.certify.stats import clopper_pearson_lower

SIGMA = 0.5


def half_plane(x: torch.Tensor) -> torch.Tensor:
    """Base classifier: class 1 right of the hyperplane x_0 = 0, class 0 left of it."""
    return (x[:, 0] > 0).to(torch.int64)


def points(first_coords: list[float], dim: int = 3) -> torch.Tensor:
    x = torch.zeros(len(first_coords), dim, dtype=torch.float64)
    x[:, 0] = torch.tensor(first_coords, dtype=torch.float64)
    x[:, 1:] = 7.0  # coordinates the classifier ignores
    return x


def test_far_point_certifies_its_class_with_the_analytic_radius() -> None:
    # Prepare: 5 sigma from the boundary, every one of the n draws lands on the same side.
    config = SmoothingConfig(sigma=SIGMA, n0=100, n=1000, alpha=0.001, batch_size=512)
    x = points([5 * SIGMA, -5 * SIGMA])
    gen = torch.Generator().manual_seed(0)

    # Execute
    labels, radii = smoothed_certify(half_plane, x, config=config, num_classes=2, generator=gen)

    # Assert: nA = n, so pA = alpha ** (1 / n) and the radius is sigma * Phi^-1(pA) < 5 sigma.
    expected = SIGMA * NormalDist().inv_cdf(clopper_pearson_lower(1000, 1000, 0.001))
    assert labels.tolist() == [1, 0]
    assert labels.dtype == torch.int64
    assert radii.dtype == torch.float32
    assert radii.tolist() == pytest.approx([expected, expected], rel=1e-6)
    assert expected == pytest.approx(0.5 * 2.4624, abs=1e-3)


def test_certified_radius_never_exceeds_the_distance_to_the_boundary() -> None:
    # Prepare: distances from 0.05 sigma to 6 sigma on both sides; the exact robust radius is |x_0|.
    config = SmoothingConfig(sigma=SIGMA, n0=100, n=2000, alpha=0.001)
    coords = [s * d * SIGMA for d in (0.05, 0.2, 0.5, 1.0, 1.5, 2.0, 3.0, 6.0) for s in (1.0, -1.0)]
    x = points(coords)
    gen = torch.Generator().manual_seed(1)

    # Execute
    labels, radii = smoothed_certify(half_plane, x, config=config, num_classes=2, generator=gen)

    # Assert
    distance = x[:, 0].abs().float()
    certified = labels != ABSTAIN
    assert bool((radii <= distance).all())
    assert bool((labels[certified] == half_plane(x)[certified]).all())
    assert bool(certified[-4:].all())  # 3 and 6 sigma away always certify
    assert bool((radii[~certified] == 0).all())
    # Away from the boundary the bound is not loose: at 1 sigma it recovers more than half the true
    # radius.
    assert float(radii[6]) > 0.5 * float(distance[6])


def test_point_on_the_boundary_abstains() -> None:
    # Prepare: 20 copies of a point exactly on the boundary, where both classes have probability
    # 1/2.
    config = SmoothingConfig(sigma=SIGMA, n0=100, n=1000, alpha=0.001)
    x = points([0.0] * 20)
    gen = torch.Generator().manual_seed(2)

    # Execute
    predicted = smoothed_predict(half_plane, x, config=config, num_classes=2, generator=gen)
    labels, radii = smoothed_certify(half_plane, x, config=config, num_classes=2, generator=gen)

    # Assert
    assert predicted.tolist() == [ABSTAIN] * 20
    assert labels.tolist() == [ABSTAIN] * 20
    assert radii.tolist() == [0.0] * 20


def test_predict_returns_the_class_of_a_point_off_the_boundary() -> None:
    # Prepare
    config = SmoothingConfig(sigma=SIGMA, n=1000, alpha=0.001)
    x = points([2 * SIGMA, -2 * SIGMA, 0.5 * SIGMA])
    gen = torch.Generator().manual_seed(3)

    # Execute
    predicted = smoothed_predict(half_plane, x, config=config, num_classes=2, generator=gen)

    # Assert
    assert predicted.tolist() == [1, 0, 1]
    assert predicted.dtype == torch.int64


def test_counts_sum_to_num_and_split_like_the_gaussian_law() -> None:
    # Prepare: x_0 = sigma, so P(class 1) = Phi(1) ~ 0.841.
    x = points([SIGMA, 0.0, -SIGMA])
    gen = torch.Generator().manual_seed(4)

    # Execute
    counts = sample_counts(
        half_plane, x, num=5000, sigma=SIGMA, num_classes=3, generator=gen, batch_size=999
    )

    # Assert
    assert counts.shape == (3, 3)
    assert counts.dtype == torch.int64
    assert counts.sum(dim=1).tolist() == [5000, 5000, 5000]
    assert counts[:, 2].tolist() == [0, 0, 0]
    shares = counts[:, 1].double() / 5000
    phi1 = NormalDist().cdf(1.0)
    assert shares.tolist() == pytest.approx([phi1, 0.5, 1 - phi1], abs=0.025)


def test_results_are_reproducible_with_the_same_seed() -> None:
    # Prepare
    config = SmoothingConfig(sigma=SIGMA, n0=50, n=300, alpha=0.01, batch_size=128)
    x = points([0.0, 0.1, 0.3, -0.2])

    # Execute
    first = smoothed_certify(
        half_plane, x, config=config, num_classes=2, generator=torch.Generator().manual_seed(5)
    )
    second = smoothed_certify(
        half_plane, x, config=config, num_classes=2, generator=torch.Generator().manual_seed(5)
    )
    counts_a = sample_counts(
        half_plane,
        x,
        num=300,
        sigma=SIGMA,
        num_classes=2,
        generator=torch.Generator().manual_seed(6),
        batch_size=64,
    )
    counts_b = sample_counts(
        half_plane,
        x,
        num=300,
        sigma=SIGMA,
        num_classes=2,
        generator=torch.Generator().manual_seed(6),
        batch_size=64,
    )
    counts_c = sample_counts(
        half_plane,
        x,
        num=300,
        sigma=SIGMA,
        num_classes=2,
        generator=torch.Generator().manual_seed(7),
        batch_size=64,
    )

    # Assert
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    assert torch.equal(counts_a, counts_b)
    assert not torch.equal(counts_a, counts_c)


def test_batched_counts_equal_one_by_one_counts_with_the_same_draws() -> None:
    # Prepare: with batch_size == num each chunk is one sample's draws, so running the samples one
    # by
    # one on the same generator consumes exactly the same noise, in the same order.
    x = points([0.0, 0.2, -0.1, 0.4, 0.05])
    num = 200

    # Execute
    batched = sample_counts(
        half_plane,
        x,
        num=num,
        sigma=SIGMA,
        num_classes=2,
        generator=torch.Generator().manual_seed(8),
        batch_size=num,
    )
    gen = torch.Generator().manual_seed(8)
    one_by_one = torch.cat(
        [
            sample_counts(
                half_plane,
                x[i : i + 1],
                num=num,
                sigma=SIGMA,
                num_classes=2,
                generator=gen,
                batch_size=num,
            )
            for i in range(x.shape[0])
        ]
    )

    # Assert
    assert torch.equal(batched, one_by_one)


def test_chunks_mix_samples_and_respect_batch_size() -> None:
    # Prepare: five well-separated centres, tiny noise; the classifier names the nearest centre and
    # records the size of every call.
    centres = torch.arange(5, dtype=torch.float32)[:, None] * torch.ones(1, 4) * 10
    calls: list[int] = []

    def nearest_centre(z: torch.Tensor) -> torch.Tensor:
        calls.append(z.shape[0])
        return torch.cdist(z, centres).argmin(dim=1)

    # Execute: 5 samples x 70 draws = 350 rows in chunks of 64 that straddle sample boundaries.
    counts = sample_counts(
        nearest_centre,
        centres,
        num=70,
        sigma=0.01,
        num_classes=5,
        generator=torch.Generator().manual_seed(9),
        batch_size=64,
    )

    # Assert
    assert torch.equal(counts, 70 * torch.eye(5, dtype=torch.int64))
    assert calls == [64, 64, 64, 64, 64, 30]


def test_sample_counts_rejects_a_generator_on_another_device() -> None:
    # Prepare
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    x = points([0.0]).cuda()

    # Execute / Assert
    with pytest.raises(ValueError, match="generator"):
        sample_counts(
            half_plane,
            x,
            num=10,
            sigma=SIGMA,
            num_classes=2,
            generator=torch.Generator(),
            batch_size=8,
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_certify_runs_on_cuda_and_returns_tensors_there() -> None:
    # Prepare
    config = SmoothingConfig(sigma=SIGMA, n0=100, n=1000, alpha=0.001)
    x = points([5 * SIGMA, 0.0]).cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)

    # Execute
    labels, radii = smoothed_certify(half_plane, x, config=config, num_classes=2, generator=gen)
    predicted = smoothed_predict(half_plane, x, config=config, num_classes=2, generator=gen)

    # Assert
    assert labels.device.type == radii.device.type == predicted.device.type == "cuda"
    assert labels.tolist() == [1, ABSTAIN]
    assert predicted.tolist() == [1, ABSTAIN]


def test_sample_counts_rejects_labels_out_of_range() -> None:
    # Prepare
    x = points([1.0])

    # Execute / Assert
    with pytest.raises(ValueError, match="label"):
        sample_counts(
            lambda z: torch.full((z.shape[0],), 2, dtype=torch.int64),
            x,
            num=10,
            sigma=SIGMA,
            num_classes=2,
            generator=torch.Generator(),
            batch_size=8,
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sigma", 0.0),
        ("sigma", -1.0),
        ("n0", 0),
        ("n", 0),
        ("alpha", 0.0),
        ("alpha", 1.0),
        ("batch_size", 0),
    ],
)
def test_config_validation_names_the_field(field: str, value: float) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        SmoothingConfig(**{field: value})


def test_default_config_is_valid() -> None:
    # Execute
    config = SmoothingConfig()

    # Assert
    assert (config.sigma, config.n0, config.n, config.alpha, config.batch_size) == (
        0.5,
        100,
        1000,
        0.001,
        4096,
    )
