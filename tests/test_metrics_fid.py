"""FID / KID: closed forms, an independent direct KID computation, null behaviour, feature net."""

import numpy as np
import pytest
import scipy.linalg

from jaxir.metrics import (
    fid,
    frechet_distance,
    inception_features,
    kid,
    load_feature_net,
    train_feature_net,
)


def _spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _closed_form(mu1, s1, mu2, s2):
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2}) with scipy's general matrix square root."""
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2.0 * root)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    for d in (1, 3, 8):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _spd(rng, d), _spd(rng, d)
        np.testing.assert_allclose(
            frechet_distance(mu1, s1, mu2, s2), _closed_form(mu1, s1, mu2, s2), rtol=1e-10
        )


def test_fid_of_gaussian_feature_sets():
    rng = np.random.default_rng(1)
    d, n = 5, 4000
    mu1, mu2, s1, s2 = rng.standard_normal(d), rng.standard_normal(d), _spd(rng, d), _spd(rng, d)
    fx = rng.multivariate_normal(mu1, s1, size=n)
    fy = rng.multivariate_normal(mu2, s2, size=n + 7)
    sample_stats = (fx.mean(0), np.cov(fx.T), fy.mean(0), np.cov(fy.T))
    np.testing.assert_allclose(fid(fx, fy), _closed_form(*sample_stats), rtol=1e-9)
    # and close to the population value (estimator error O(d / n) plus sampling noise)
    assert abs(fid(fx, fy) - _closed_form(mu1, s1, mu2, s2)) < 0.05 * _closed_form(mu1, s1, mu2, s2)


def test_fid_commuting_case_and_self_distance():
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu = np.array([1.0, 0.0, 2.0])
    expected = np.sum(mu**2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # 5 + 1 + 1
    np.testing.assert_allclose(frechet_distance(mu, np.diag(a), 0 * mu, np.diag(b)), expected)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 16)) * 3.0
    assert abs(fid(x, x)) < 1e-9
    few = rng.standard_normal((10, 32))  # N < F: singular covariance
    assert abs(fid(few, few)) < 1e-9


def test_fid_with_features_fn_and_batching(monkeypatch):
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-1, 1, (50, 4, 4, 1)), rng.uniform(-1, 1, (40, 4, 4, 1))
    flat = lambda imgs: np.asarray(imgs).reshape(len(imgs), -1)  # noqa: E731
    np.testing.assert_allclose(fid(x, y, flat, batch_size=7), fid(flat(x), flat(y)), rtol=1e-12)
    with pytest.raises(ValueError, match="features_fn"):
        fid(x, y)
    # InceptionV3 features need user-converted weights; without them the error says how
    monkeypatch.delenv("JAXIR_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="convert_inception_weights.py"):
        inception_features(np.zeros((2, 8, 8, 3), np.float32))


def _kid_direct(fx, fy):
    """Unbiased MMD², polynomial kernel, written out with loops over pairs."""
    d = fx.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    m, n = len(fx), len(fy)
    xx = sum(k(fx[i], fx[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(fy[i], fy[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(a, b) for a in fx for b in fy) / (m * n)
    return xx + yy - 2.0 * xy


def test_kid_equals_direct_computation():
    rng = np.random.default_rng(4)
    fx, fy = rng.standard_normal((12, 3)), rng.standard_normal((12, 3)) + 0.3
    # one subset of all points is a permutation, and MMD² does not depend on the order
    mean, std = kid(fx, fy, num_subsets=1, subset_size=100)
    np.testing.assert_allclose(mean, _kid_direct(fx, fy), rtol=1e-12)
    assert std == 0.0
    # subsets: the documented sampler (default_rng(seed), x then y, without replacement)
    mean, std = kid(fx, fy[:10], num_subsets=3, subset_size=6, seed=7)
    sampler = np.random.default_rng(7)
    vals = [
        _kid_direct(
            fx[sampler.choice(12, 6, replace=False)], fy[:10][sampler.choice(10, 6, replace=False)]
        )
        for _ in range(3)
    ]
    np.testing.assert_allclose([mean, std], [np.mean(vals), np.std(vals)], rtol=1e-10)


def test_kid_unbiased_under_the_null_and_detects_a_shift():
    rng = np.random.default_rng(5)
    reps, n, d = 40, 150, 8
    same = [
        kid(rng.standard_normal((n, d)), rng.standard_normal((n, d)), num_subsets=1)[0]
        for _ in range(reps)
    ]
    se = np.std(same, ddof=1) / np.sqrt(reps)
    assert abs(np.mean(same)) < 3.5 * se  # E[MMD²_u] = 0 for one distribution
    shifted = [
        kid(rng.standard_normal((n, d)), rng.standard_normal((n, d)) + 0.3, num_subsets=1)[0]
        for _ in range(10)
    ]
    assert np.mean(shifted) > 10 * se


def test_feature_net_train_save_load(tmp_path):
    path = tmp_path / "featnet.npz"
    trained = train_feature_net("digits", path=path, image_size=8, steps=15, batch_size=32)
    assert 0.0 <= trained.test_accuracy <= 1.0
    x = np.random.default_rng(6).uniform(-1, 1, (5, 8, 8, 1)).astype(np.float32)
    feats = np.asarray(trained.features_fn(x))
    assert feats.shape == (5, 64)
    np.testing.assert_allclose(load_feature_net(path)(x), feats, rtol=1e-6, atol=1e-6)
    # other sizes are resized to the training size
    assert np.asarray(trained.features_fn(np.zeros((2, 16, 16, 1), np.float32))).shape == (2, 64)
    with np.load(path, allow_pickle=False) as data:
        assert str(data["source"]) == "digits"


@pytest.mark.slow
def test_feature_net_learns_digits():
    """The default run (600 Adam steps, ~25 s on 2 busy CPU cores) classifies held-out digits."""
    assert train_feature_net("digits").test_accuracy > 0.95  # observed 0.986
