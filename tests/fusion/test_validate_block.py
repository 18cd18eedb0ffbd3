import numpy as np

from copur.roles.fusion.parties import validate_block


def test_good_block_is_valid() -> None:
    valid, reason = validate_block(np.ones((3, 4), np.float32), n=3, emb_dim=4, max_norm=10)

    assert valid.all() and reason == ""


def test_wrong_shape_invalidates_the_whole_answer() -> None:
    valid, reason = validate_block(np.ones((2, 4), np.float32), n=3, emb_dim=4, max_norm=10)

    assert not valid.any() and "shape (2, 4)" in reason


def test_nan_inf_and_absurd_norms_invalidate_only_their_rows() -> None:
    block = np.ones((4, 4), np.float32)
    block[1, 0] = np.nan
    block[2, 3] = np.inf
    block[3] *= 100

    valid, reason = validate_block(block, n=4, emb_dim=4, max_norm=10)

    assert valid.tolist() == [True, False, False, False] and reason == "non-finite values"


def test_subnormal_values_integer_bytes_read_as_float32_invalidate_their_rows() -> None:
    block = np.ones((3, 4), np.float32)
    block[1] = np.arange(4, dtype="<i4").view(
        "<f4"
    )  # the int32s 0..3 as float32: 0 and three subnormals
    block[2, 0] = 0.0  # an exact zero is a value like any other

    valid, reason = validate_block(block, n=3, emb_dim=4, max_norm=10)

    assert valid.tolist() == [True, False, True] and reason == "subnormal values (not float32 data)"


def test_norms_near_float32_max_do_not_overflow_into_acceptance() -> None:
    block = np.full((2, 4), np.finfo(np.float32).max, np.float32)
    block[0] = 1.0

    with np.errstate(all="raise"):  # no overflow on the way
        valid, reason = validate_block(block, n=2, emb_dim=4, max_norm=10)

    assert valid.tolist() == [True, False] and reason == "absurd norm"
