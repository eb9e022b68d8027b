"""Initialisations (MATH.md sections 1, 5, 8)."""

import numpy as np
import pytest

from symflow.numerics.init import degenerate, gaussian, orthonormal


@pytest.mark.parametrize("d,k", [(1, 1), (7, 3), (20, 20), (50, 1)])
def test_orthonormal_shape_and_scaling(d, k):
    W = orthonormal(d, k, seed=0)
    assert W.shape == (d, k)
    np.testing.assert_allclose(W.T @ W, np.eye(k) / k, atol=1e-14)


def test_orthonormal_is_haar_not_biased():
    # Haar: E[W W^T] = I / d (scaled by k / k); first coordinate^2 of a column has mean 1/(d k)
    d, k, n = 6, 2, 4000
    s = np.mean([orthonormal(d, k, seed=i)[0, 0] for i in range(n)])
    assert abs(s) < 4 * np.sqrt(1 / (d * k) / n)  # sign fix must not bias the sign


def test_gaussian_variance():
    d, k = 200, 100
    for normalize, var in ((True, 1 / (d * k)), (False, 1 / k)):
        W = gaussian(d, k, seed=1, normalize=normalize)
        assert W.shape == (d, k)
        n = W.size
        se = var * np.sqrt(2 / (n - 1))  # standard error of the sample variance
        assert abs(W.var() - var) < 4 * se
        assert abs(W.mean()) < 4 * np.sqrt(var / n)


@pytest.mark.parametrize("f", [orthonormal, gaussian])
def test_seed_determinism(f):
    a, b, c = f(10, 4, seed=3), f(10, 4, seed=3), f(10, 4, seed=4)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_k_greater_than_d_raises():
    with pytest.raises(ValueError, match="k"):
        orthonormal(3, 4, seed=0)
    assert gaussian(3, 4, seed=0).shape == (3, 4)  # allowed for Gaussian weights


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_sizes_raise(bad):
    with pytest.raises(ValueError, match="d"):
        orthonormal(bad, 1)
    with pytest.raises(ValueError, match="k"):
        gaussian(3, bad)
    with pytest.raises(TypeError, match="d"):
        gaussian(2.5, 1)


def test_degenerate_zeroes_one_row_and_copies():
    W = orthonormal(8, 3, seed=5)
    Wd = degenerate(W, direction=2)
    assert np.all(Wd[2] == 0.0)
    np.testing.assert_array_equal(np.delete(Wd, 2, axis=0), np.delete(W, 2, axis=0))
    assert np.all(W[2] != 0.0)  # input untouched
    assert np.all(degenerate(W)[0] == 0.0)
    with pytest.raises(ValueError, match="direction"):
        degenerate(W, direction=8)
    with pytest.raises(TypeError, match="direction"):
        degenerate(W, direction=1.0)
