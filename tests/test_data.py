"""Offline data: seeded, whitened on request, shifts of the chosen rank, disjoint digits splits."""

import numpy as np
import pytest

from toyllora import data


def test_same_seed_same_data_and_other_seed_other_data():
    a = data.teacher_student(seed=3, d_in=6, d_out=4, n_train=20, n_test=10, shift_rank=2)
    b = data.teacher_student(seed=3, d_in=6, d_out=4, n_train=20, n_test=10, shift_rank=2)
    c = data.teacher_student(seed=4, d_in=6, d_out=4, n_train=20, n_test=10, shift_rank=2)
    np.testing.assert_array_equal(a.data.X, b.data.X)
    assert not np.allclose(a.data.X, c.data.X)


def test_shift_has_the_chosen_rank_and_spectrum_and_targets_are_exact():
    t = data.teacher_student(seed=0, d_in=8, d_out=5, n_train=30, n_test=10, shift_rank=3, spectrum=[3.0, 2.0, 0.5])
    s = np.linalg.svd(np.asarray(t.delta, dtype=np.float64), compute_uv=False)
    np.testing.assert_allclose(s[:3], [3.0, 2.0, 0.5], rtol=1e-5)
    assert s[3] < 1e-5
    np.testing.assert_allclose(np.asarray(t.data.X) @ np.asarray(t.W_target).T, t.data.Y, rtol=1e-4, atol=1e-5)


def test_whitened_inputs_and_condition_number():
    t = data.teacher_student(seed=0, d_in=6, d_out=3, n_train=40, n_test=10, whiten=True)
    X = np.asarray(t.data.X, dtype=np.float64)
    np.testing.assert_allclose(X.T @ X / 40, np.eye(6), atol=1e-5)
    rng = np.random.default_rng(0)
    Xc = data.inputs(rng, 20000, 5, cond=100.0)
    ev = np.linalg.eigvalsh(np.cov(Xc.T))
    assert 60 < ev.max() / ev.min() < 160


def test_digits_splits_are_disjoint_and_shifted():
    dg = data.digits(seed=0)
    assert dg.pretrain.X.shape[1] == 64 and dg.finetune.X.shape == (256, 64)
    raw_pre = {tuple(np.round(r, 4)) for r in np.asarray(dg.pretrain.X)}
    assert not any(tuple(np.round(r, 4)) in raw_pre for r in np.asarray(dg.finetune.X))
    d, dv = data.diabetes(seed=0)
    assert d.X.shape == (200, 10) and d.Y.shape == (200, 1) and dv.X_test.shape == (100, 10)
    np.testing.assert_allclose(np.asarray(d.X).mean(0), 0, atol=1e-5)


@pytest.mark.parametrize("kwargs, field", [
    (dict(shift_rank=9), "shift_rank"), (dict(n_train=0), "n_train"), (dict(cond=0.5), "cond"),
    (dict(noise=-1.0), "noise"), (dict(spectrum=[1.0]), "spectrum"), (dict(whiten=True, n_train=4), "n_train"),
])
def test_bad_arguments_raise(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        data.teacher_student(**{**dict(d_in=8, d_out=4), **kwargs})
