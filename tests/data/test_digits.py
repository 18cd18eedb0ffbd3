import numpy as np
from sklearn.datasets import load_digits

from copur.science.data import DatasetSpec, load_dataset


def test_digits_quadrants_reassemble_the_image() -> None:
    data = load_dataset(DatasetSpec(name="digits"))
    image = load_digits().images[7]

    quads = [x[7].reshape(4, 4) for x in data.features]
    rebuilt = np.block([[quads[0], quads[1]], [quads[2], quads[3]]])

    assert data.party_dims == (16, 16, 16, 16)
    assert np.array_equal(rebuilt, image)
    assert data.num_classes == 10
