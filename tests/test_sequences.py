"""The sequence tasks: shapes and vocabulary, each task's rule, splits disjoint by construction (within a task,
across seeds and across the pre-training / shifted tasks), determinism, mixtures, and bad input."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from toyllora.data import sequences as sq

SIZES = dict(n_train=48, n_val=16, n_test=16)


def _np(a):
    return np.asarray(a)


def _content(name, X):
    """The part of a sequence that decides its split (see the module docstring)."""
    X = _np(X)
    if name in ("add", "sub", "mul"):
        c = X[:, 2:4]
    elif name in ("copy", "reverse", "map"):
        c = X[:, 2:2 + sq.SPAN]
    elif name in ("grammar", "grammar_shifted"):
        c = X[:, 2:]
    elif name == "count":
        c = X[:, 2:2 + sq.COUNT_LEN]
    else:
        c = np.concatenate([X[:, 2:2 + sq.SPAN], X[:, 3 + sq.SPAN:3 + 2 * sq.SPAN]], axis=1)
    return {tuple(row) for row in c.tolist()}


def _splits(name, seed=0, **sizes):
    t = sq.task(name, seed, **(sizes or SIZES))
    return t.data.X, t.data_val.X_test, t.data.X_test


@pytest.mark.parametrize("name", sq.TASKS)
def test_shapes_dtypes_and_vocabulary(name):
    t = sq.task(name, 0, **SIZES)
    X, Y = _np(t.data.X), _np(t.data.Y)
    assert X.shape == (48, sq.SEQ_LEN) and t.data.X_test.shape == (16, sq.SEQ_LEN) == t.data_val.X_test.shape
    assert X.dtype == np.int32 and Y.dtype == np.int32
    assert X.min() >= 0 and X.max() < sq.VOCAB_SIZE and (X[:, 0] == sq.BOS).all()
    if name in sq.CLASSIFICATION_TASKS:
        assert Y.shape == (48,) and set(np.unique(Y)) <= {0, 1} and (X[:, -1] == sq.QUERY).all()
        assert (X != sq.PAD).all()  # no padding: the last position is the query token
    else:
        assert Y.shape == X.shape
        scored = Y >= 0
        assert scored.any(axis=1).all() and set(np.unique(Y[~scored])) == {sq.IGNORE}
        np.testing.assert_array_equal(Y[:, :-1][scored[:, :-1]], X[:, 1:][scored[:, :-1]])  # the next token
        assert not scored[:, -1].any()


@pytest.mark.parametrize("name", sq.TASKS)
def test_train_validation_and_test_are_disjoint(name):
    tr, va, te = (_content(name, X) for X in _splits(name))
    assert not (tr & va) and not (tr & te) and not (va & te)


def test_splits_are_disjoint_across_seeds_and_across_the_shift():
    """A content's split is a function of the content alone: held-out contents stay held out everywhere."""
    add_train = _content("add", sq.task("add", 0, n_train=400, n_val=4, n_test=4).data.X)
    for seed in (1, 2):
        assert not add_train & _content("mul", sq.task("mul", seed, n_train=4, n_val=40, n_test=40).data.X_test)
        assert not add_train & _content("sub", sq.task("sub", seed, n_train=4, n_val=40, n_test=40).data_val.X_test)
    copy_train = _content("copy", sq.task("copy", 0, n_train=400, n_val=4, n_test=4).data.X)
    assert not copy_train & _content("map", sq.task("map", 3, n_train=4, n_val=4, n_test=200).data.X_test)


def test_arithmetic_pairs_split_into_three_nonempty_parts():
    a, b = np.meshgrid(np.arange(sq.MODULUS), np.arange(sq.MODULUS))
    counts = np.bincount(sq.split_of(np.stack([a.ravel(), b.ravel()], axis=1)), minlength=3)
    assert counts.sum() == sq.MODULUS ** 2 and (counts > 0).all() and counts[0] > counts[1] + counts[2]


@given(st.integers(0, 2 ** 31 - 1))
def test_split_of_depends_on_the_row_only_and_is_about_80_10_10(seed):
    rng = np.random.default_rng(seed)
    content = rng.integers(0, 16, (2000, 6))
    splits = sq.split_of(content)
    perm = rng.permutation(len(content))
    np.testing.assert_array_equal(sq.split_of(content[perm]), splits[perm])
    share = np.bincount(splits, minlength=3) / len(content)
    np.testing.assert_allclose(share, [0.8, 0.1, 0.1], atol=0.04)


@pytest.mark.parametrize("name", ["add", "sub", "mul"])
def test_arithmetic_answers(name):
    X, Y = (_np(a) for a in sq.draw(name, "train", 64, seed=1))
    a, b, c = X[:, 2] - sq.NUMBER0, X[:, 3] - sq.NUMBER0, Y[:, 4] - sq.NUMBER0
    np.testing.assert_array_equal(c, sq.OPERATIONS[name](a, b))
    assert (X[:, 1] == sq.PROMPT[name]).all() and (X[:, 4] == sq.SEP).all()


@pytest.mark.parametrize("name, rule", [("copy", lambda x: x), ("reverse", lambda x: x[:, ::-1]),
                                        ("map", lambda x: sq.MAP_PERMUTATION[x])])
def test_span_tasks(name, rule):
    X, _ = sq.draw(name, "test", 32, seed=2)
    x = X[:, 2:2 + sq.SPAN] - sq.SYMBOL0
    np.testing.assert_array_equal(X[:, 3 + sq.SPAN:3 + 2 * sq.SPAN] - sq.SYMBOL0, rule(x))


def test_map_permutes_a_sub_vocabulary_without_fixed_points():
    perm = sq.MAP_PERMUTATION
    assert sorted(perm.tolist()) == list(range(sq.N_SYMBOLS))
    assert (perm[:8] != np.arange(8)).all() and (perm[8:] == np.arange(8, sq.N_SYMBOLS)).all()


def _words(row):
    return [sq.WORDS[t - sq.WORD0] for t in row if sq.WORD0 <= t < sq.VOCAB_SIZE]


def _category(word):
    return next(c for c, ws in sq.LEXICON.items() if word in ws)


@pytest.mark.parametrize("shifted", [False, True])
def test_grammar_agreement_and_the_changed_rule(shifted):
    X, _ = sq.draw("grammar_shifted" if shifted else "grammar", "train", 200, seed=3)
    saw_adjective = False
    for row in X:
        cats = [_category(w) for w in _words(row)]
        verb = next(i for i, c in enumerate(cats) if c.startswith("verb"))
        subject = [c for c in cats[:verb] if c.startswith("noun")]
        assert len(subject) == 1 and subject[0][-2:] == cats[verb][-2:]   # subject-verb agreement
        for i, c in enumerate(cats):
            if c == "adj":
                saw_adjective = True
                assert cats[i - 1 if shifted else i + 1].startswith("noun")   # the rule that changes
        assert row.tolist().count(sq.SEP) == 1
    assert saw_adjective


def test_count_and_agree_labels_follow_their_rules():
    X, Y = sq.draw("count", "train", 300, seed=4)
    s = X[:, 2:2 + sq.COUNT_LEN] - sq.SYMBOL0
    n0, n1 = (s == 0).sum(1), (s == 1).sum(1)
    assert (n0 != n1).all()
    np.testing.assert_array_equal(Y, (n0 > n1).astype(int))
    X, Y = sq.draw("agree", "train", 300, seed=4)
    x, y = X[:, 2:2 + sq.SPAN], X[:, 3 + sq.SPAN:3 + 2 * sq.SPAN]
    differ = (x != y).sum(1)
    np.testing.assert_array_equal(Y, (differ == 0).astype(int))
    assert set(differ.tolist()) == {0, 1}
    for labels in (Y, sq.draw("count", "train", 300, seed=4)[1]):
        assert 0.35 < labels.mean() < 0.65


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = (sq.task("grammar", s, **SIZES).data for s in (5, 5, 6))
    np.testing.assert_array_equal(_np(a.X), _np(b.X))
    np.testing.assert_array_equal(_np(a.Y_test), _np(b.Y_test))
    assert not np.array_equal(_np(a.X), _np(c.X))


def test_mixtures_have_equal_shares_and_their_tasks_are_the_tasks_alone():
    m = sq.pretraining_mixture(0, n_train=50, n_val=10, n_test=10)
    assert m.tasks == sq.PRETRAIN_TASKS and m.data.X.shape == (50, sq.SEQ_LEN)
    prompts = [sq.PROMPTS[t - len(sq.SPECIALS)] for t in _np(m.data.X)[:, 1]]
    assert {p: prompts.count(p) for p in set(prompts)} == {p: 10 for p in sq.PRETRAIN_TASKS}
    alone = {tuple(r) for r in sq.draw("copy", "train", 10, seed=0)[0].tolist()}
    assert alone == {tuple(r) for r, p in zip(_np(m.data.X).tolist(), prompts) if p == "copy"}
    s = sq.shifted_mixture(0, n_train=9, n_val=3, n_test=3)
    assert s.tasks == sq.SHIFTED_TASKS and set(sq.SHIFTS) == set(sq.SHIFTED_TASKS)
    assert not set(sq.PRETRAIN_TASKS) & set(sq.SHIFTED_TASKS)


@pytest.mark.parametrize("call, field", [
    (lambda: sq.task("division"), "name"), (lambda: sq.task("copy", n_train=0), "n_train"),
    (lambda: sq.mixture(("copy", "count")), "names"), (lambda: sq.mixture(()), "names"),
    (lambda: sq.draw("copy", "holdout", 3), "split"), (lambda: sq.task("add", n_test=1.5), "n_test"),
])
def test_bad_input_raises_naming_the_field(call, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        call()
