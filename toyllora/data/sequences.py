"""Synthetic token-sequence tasks for the transformer: pre-train on one mixture, fine-tune on a shifted one.

Offline and seeded (NumPy ``default_rng``). Every sequence has ``SEQ_LEN = 16`` tokens from one shared
vocabulary of ``VOCAB_SIZE = 61`` ids (fits :class:`toyllora.models.TransformerConfig`'s default 64).

Next-token tasks (``X (n, 16)`` token ids, ``Y (n, 16)`` the next token where scored, ``IGNORE = -1``
elsewhere; :func:`toyllora.models.masked_xent` skips negative targets):

===================  ===========================================  ============  =================================
task                 sequence (scored part in brackets)           content       role
===================  ===========================================  ============  =================================
``add``              ``BOS add a b SEP [a+b mod 13]``             ``(a, b)``    pre-training
``sub``              ``BOS sub a b SEP [a−b mod 13]``             ``(a, b)``    pre-training
``copy``             ``BOS copy x₁..x₆ SEP [x₁..x₆]``             ``x``         pre-training
``reverse``          ``BOS reverse x₁..x₆ SEP [x₆..x₁]``          ``x``         pre-training
``grammar``          ``BOS grammar [w₁ … w_k SEP]`` (a PCFG)      sentence      pre-training
``mul``              ``BOS mul a b SEP [a·b mod 13]``             ``(a, b)``    shift: a new operation
``map``              ``BOS map x₁..x₆ SEP [π(x₁)..π(x₆)]``        ``x``         shift: permuted sub-vocabulary
``grammar_shifted``  as ``grammar``, adjectives after the noun    sentence      shift: a changed grammar rule
===================  ===========================================  ============  =================================

The *content* column decides the split (below).
(``π`` permutes symbols 0–7 without a fixed point and leaves 8–15 alone; the grammar has subject–verb
number agreement, optional adjectives, objects and prepositional phrases; ``grammar_shifted`` keeps the
``grammar`` prompt token, so its rule conflicts with pre-training, while ``mul`` and ``map`` have
prompt tokens never seen in pre-training.)

Sequence classification (GLUE-like, ``Y (n,)`` labels in {0, 1}, balanced, no padding so the last
position is the ``QUERY`` token):

* ``count`` — ``BOS count s₁..s₁₃ QUERY``: 1 iff symbol 0 occurs more often than symbol 1 (sentiment by
  word counts; never a tie).
* ``agree`` — ``BOS agree x₁..x₆ SEP y₁..y₆ QUERY``: 1 iff the spans are equal; negatives differ in
  exactly one position (paraphrase / agreement of two spans).

Disjoint splits by construction: a sequence's split (train 80 %, validation 10 %, test 10 % of a hash
space) is a fixed function of its *content* (the column above), with a salt that no seed changes. So no
content is in two splits, for any seed, task or mixture — e.g. a pair ``(a, b)`` held out of ``add``'s
training split is also held out of ``mul``'s, and a test string of ``map`` was never copied in
pre-training.

Example:
    >>> from toyllora.data import sequences
    >>> t = sequences.task("copy", seed=0, n_train=8, n_val=4, n_test=4)
    >>> t.data.X.shape, t.data.Y.shape, t.data.X_test.shape, t.data_val.X_test.shape   # train, test, val
    ((8, 16), (8, 16), (4, 16), (4, 16))
    >>> sequences.decode(t.data.X[0])
    'BOS copy s8 s14 s15 s13 s11 s5 SEP s8 s14 s15 s13 s11 s5 PAD'
    >>> [sequences.decode([y]) if y >= 0 else y for y in t.data.Y[0].tolist()][7:]   # scored from SEP on
    [-1, 's8', 's14', 's15', 's13', 's11', 's5', -1, -1]
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from toyllora.data import Data

SEQ_LEN = 16
IGNORE = -1                     # target of an unscored position (any negative target is ignored)
PAD, BOS, SEP, QUERY = 0, 1, 2, 3
SPECIALS = ("PAD", "BOS", "SEP", "QUERY")
PROMPTS = ("add", "sub", "mul", "copy", "reverse", "map", "grammar", "count", "agree")
PROMPT = {name: len(SPECIALS) + i for i, name in enumerate(PROMPTS)}
MODULUS = 13
NUMBER0 = len(SPECIALS) + len(PROMPTS)                 # token of the number 0
N_SYMBOLS = 16
SYMBOL0 = NUMBER0 + MODULUS                            # token of symbol 0
SPAN = 6                                               # copy / reverse / map / agree span length
COUNT_LEN = 13
LEXICON = {"det": ("the", "a"), "adj": ("big", "red", "old"), "noun_sg": ("cat", "dog", "bird"),
           "noun_pl": ("cats", "dogs", "birds"), "verb_sg": ("sees", "likes", "chases"),
           "verb_pl": ("see", "like", "chase"), "prep": ("near", "under")}
WORDS = tuple(w for ws in LEXICON.values() for w in ws)
WORD0 = SYMBOL0 + N_SYMBOLS
VOCAB_SIZE = WORD0 + len(WORDS)                        # 61
MAP_PERMUTATION = np.array([3, 0, 6, 1, 7, 2, 5, 4] + list(range(8, N_SYMBOLS)))

LM_TASKS = ("add", "sub", "mul", "copy", "reverse", "map", "grammar", "grammar_shifted")
CLASSIFICATION_TASKS = ("count", "agree")
TASKS = LM_TASKS + CLASSIFICATION_TASKS
PRETRAIN_TASKS = ("add", "sub", "copy", "reverse", "grammar")
SHIFTED_TASKS = ("mul", "map", "grammar_shifted")
SHIFTS = {"mul": "a new operation (a·b mod 13; pre-training saw + and −)",
          "map": "a permuted sub-vocabulary (copy with symbols 0-7 permuted)",
          "grammar_shifted": "a changed grammar rule (adjective after the noun)"}
SPLITS = ("train", "val", "test")
SPLIT_SALT = 0x9E3779B97F4A7C15      # fixed: the split of a content never depends on a seed
GRAMMAR_P = {"adj": 0.4, "object": 0.4, "pp": 0.3}     # P(adjective), P(object only), P(object + PP)


def decode(tokens) -> str:
    """Token ids as readable text (numbers ``n7``, symbols ``s3``, words as themselves)."""
    out = []
    for t in np.asarray(tokens).tolist():
        if t < len(SPECIALS):
            out.append(SPECIALS[t])
        elif t < NUMBER0:
            out.append(PROMPTS[t - len(SPECIALS)])
        elif t < SYMBOL0:
            out.append(f"n{t - NUMBER0}")
        elif t < WORD0:
            out.append(f"s{t - SYMBOL0}")
        elif t < VOCAB_SIZE:
            out.append(WORDS[t - WORD0])
        else:
            out.append(f"<{t}>")
    return " ".join(out)


def _mix64(h):
    """splitmix64's finalizer on a uint64 array (wrap-around arithmetic)."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def split_of(content) -> np.ndarray:
    """The split index (0 train, 1 validation, 2 test) of each row of integer ``content (n, c)``.

    A fixed hash (no seed): buckets 0–7 of 10 are train, 8 validation, 9 test.

    >>> split_of(np.array([[1, 2], [1, 2], [5, 7]])).tolist()   # the same content, the same split
    [2, 2, 0]
    """
    content = np.asarray(content, dtype=np.int64)
    with np.errstate(over="ignore"):
        h = np.full(content.shape[0], SPLIT_SALT, dtype=np.uint64)
        for j in range(content.shape[1]):
            h = _mix64(h ^ (content[:, j].astype(np.uint64) + np.uint64(j + 1) * np.uint64(0x632BE59BD9B4E019)))
        bucket = (h % np.uint64(10)).astype(np.int64)
    return np.where(bucket < 8, 0, np.where(bucket == 8, 1, 2))


# -- samplers: (rng, n) -> (X (n, T), Y (n, T) or (n,), content (n, c)) ----------------------------------


def _blank(n):
    return np.full((n, SEQ_LEN), PAD, np.int64), np.full((n, SEQ_LEN), IGNORE, np.int64)


OPERATIONS = {"add": lambda a, b: (a + b) % MODULUS, "sub": lambda a, b: (a - b) % MODULUS,
              "mul": lambda a, b: (a * b) % MODULUS}


def _arithmetic(op):
    def sample(rng, n):
        a, b = rng.integers(0, MODULUS, n), rng.integers(0, MODULUS, n)
        X, Y = _blank(n)
        X[:, :6] = np.stack([np.full(n, BOS), np.full(n, PROMPT[op]), NUMBER0 + a, NUMBER0 + b,
                             np.full(n, SEP), NUMBER0 + OPERATIONS[op](a, b)], axis=1)
        Y[:, 4] = X[:, 5]
        return X, Y, np.stack([a, b], axis=1)
    return sample


def _span_task(prompt, transform):
    def sample(rng, n):
        x = rng.integers(0, N_SYMBOLS, (n, SPAN))
        X, Y = _blank(n)
        X[:, 0], X[:, 1], X[:, 2:2 + SPAN], X[:, 2 + SPAN] = BOS, PROMPT[prompt], SYMBOL0 + x, SEP
        X[:, 3 + SPAN:3 + 2 * SPAN] = SYMBOL0 + transform(x)
        Y[:, 2 + SPAN:2 + 2 * SPAN] = X[:, 3 + SPAN:3 + 2 * SPAN]
        return X, Y, x
    return sample


def _word(category, u):
    options = LEXICON[category]
    return WORD0 + WORDS.index(options[min(int(u * len(options)), len(options) - 1)])


def _noun_phrase(number, u, shifted):
    det, noun = _word("det", next(u)), _word(f"noun_{number}", next(u))
    if next(u) >= GRAMMAR_P["adj"]:
        return [det, noun]
    adj = _word("adj", next(u))
    return [det, noun, adj] if shifted else [det, adj, noun]


def _sentence(u, shifted):
    """S → NP_n VP_n (n ∈ {sg, pl}: subject–verb agreement); NP → DET (ADJ) N; VP → V | V NP | V NP P NP."""
    number = "sg" if next(u) < 0.5 else "pl"
    words = _noun_phrase(number, u, shifted) + [_word(f"verb_{number}", next(u))]
    r = next(u)
    if r < GRAMMAR_P["object"] + GRAMMAR_P["pp"]:
        words += _noun_phrase("sg" if next(u) < 0.5 else "pl", u, shifted)
        if r >= GRAMMAR_P["object"]:
            words += [_word("prep", next(u))] + _noun_phrase("sg" if next(u) < 0.5 else "pl", u, shifted)
    return words


def _grammar(shifted):
    def sample(rng, n):
        X, Y = _blank(n)
        draws = rng.random((n, 24))
        for i in range(n):
            words = [BOS, PROMPT["grammar"]] + _sentence(iter(draws[i]), shifted) + [SEP]
            X[i, :len(words)] = words
            Y[i, 1:len(words) - 1] = words[2:]
        return X, Y, X[:, 2:]
    return sample


def _count(rng, n):
    labels = rng.integers(0, 2, n)
    pairs = [(i, j) for i in range(7) for j in range(7) if i != j and i + j <= COUNT_LEN]
    wins = [p for p in pairs if p[0] > p[1]]
    losses = [p for p in pairs if p[0] < p[1]]
    pick = lambda options, k: np.asarray(options)[rng.integers(0, len(options), k)]
    counts = np.where(labels[:, None] == 1, pick(wins, n), pick(losses, n))
    s = rng.integers(2, N_SYMBOLS, (n, COUNT_LEN))        # distractors: symbols 2..15
    pos = np.arange(COUNT_LEN)[None, :]
    s = np.where(pos < counts[:, :1], 0, np.where(pos < counts[:, :1] + counts[:, 1:], 1, s))
    s = np.take_along_axis(s, np.argsort(rng.random((n, COUNT_LEN)), axis=1), axis=1)
    X = np.concatenate([np.full((n, 1), BOS), np.full((n, 1), PROMPT["count"]), SYMBOL0 + s,
                        np.full((n, 1), QUERY)], axis=1)
    return X, labels, s


def _agree(rng, n):
    labels = rng.integers(0, 2, n)
    x = rng.integers(0, N_SYMBOLS, (n, SPAN))
    y = x.copy()
    where = rng.integers(0, SPAN, n)
    changed = (x[np.arange(n), where] + rng.integers(1, N_SYMBOLS, n)) % N_SYMBOLS
    y[np.arange(n), where] = np.where(labels == 1, y[np.arange(n), where], changed)
    X = np.concatenate([np.full((n, 1), BOS), np.full((n, 1), PROMPT["agree"]), SYMBOL0 + x,
                        np.full((n, 1), SEP), SYMBOL0 + y, np.full((n, 1), QUERY)], axis=1)
    return X, labels, np.concatenate([x, y], axis=1)


SAMPLERS = {"add": _arithmetic("add"), "sub": _arithmetic("sub"), "mul": _arithmetic("mul"),
            "copy": _span_task("copy", lambda x: x), "reverse": _span_task("reverse", lambda x: x[:, ::-1]),
            "map": _span_task("map", lambda x: MAP_PERMUTATION[x]),
            "grammar": _grammar(False), "grammar_shifted": _grammar(True), "count": _count, "agree": _agree}


# -- splits, tasks and mixtures --------------------------------------------------------------------------


class SequenceTask(NamedTuple):
    """``data``: train split with the test split as evaluation set; ``data_val``: train split with the
    validation split. ``tasks``: the task names it mixes (one for :func:`task`)."""

    data: Data
    data_val: Data
    tasks: tuple


def _check_sizes(**sizes):
    for name, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")


def _check_name(name):
    if name not in TASKS:
        raise ValueError(f"name: unknown task {name!r}; allowed: {TASKS}")


def draw(name: str, split: str, n: int, seed: int = 0):
    """``n`` examples of task ``name`` whose content lies in ``split`` (NumPy int64 ``X, Y``).

    The stream depends on (seed, task, split) only, so a task's examples are the same in every mixture.
    """
    _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split: unknown value {split!r}; allowed: {SPLITS}")
    _check_sizes(n=n)
    rng = np.random.default_rng([int(seed), TASKS.index(name), SPLITS.index(split)])
    want, Xs, Ys, have = SPLITS.index(split), [], [], 0
    batch = max(64, 12 * n if split != "train" else 2 * n)
    while have < n:
        X, Y, content = SAMPLERS[name](rng, batch)
        keep = split_of(content) == want
        Xs.append(X[keep])
        Ys.append(Y[keep])
        have += int(keep.sum())
    return np.concatenate(Xs)[:n], np.concatenate(Ys)[:n]


def _as_data(train, evaluation) -> Data:
    i32 = lambda a: jnp.asarray(a, dtype=jnp.int32)
    return Data(i32(train[0]), i32(train[1]), i32(evaluation[0]), i32(evaluation[1]))


def task(name: str, seed: int = 0, *, n_train: int = 1024, n_val: int = 256, n_test: int = 512) -> SequenceTask:
    """One task's disjoint train / validation / test splits (see the module docstring for the names)."""
    _check_name(name)
    _check_sizes(n_train=n_train, n_val=n_val, n_test=n_test)
    tr, va, te = (draw(name, s, n, seed) for s, n in zip(SPLITS, (n_train, n_val, n_test)))
    return SequenceTask(_as_data(tr, te), _as_data(tr, va), (name,))


def _mix(names, split, n, seed):
    shares = [n // len(names) + (i < n % len(names)) for i in range(len(names))]
    parts = [draw(name, split, k, seed) for name, k in zip(names, shares) if k > 0]
    X, Y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    order = np.random.default_rng([int(seed), len(TASKS), SPLITS.index(split)]).permutation(n)
    return X[order], Y[order]


def mixture(names, seed: int = 0, *, n_train: int = 4096, n_val: int = 512, n_test: int = 1024) -> SequenceTask:
    """Equal shares of next-token tasks ``names``, shuffled; each split disjoint from the others.

    >>> m = mixture(("add", "copy"), n_train=6, n_val=2, n_test=2)
    >>> sorted({decode(x).split()[1] for x in m.data.X})
    ['add', 'copy']
    """
    names = tuple(names)
    if not names:
        raise ValueError(f"names: needs at least one task; allowed: {LM_TASKS}")
    for name in names:
        _check_name(name)
        if name not in LM_TASKS:
            raise ValueError(f"names: a mixture takes next-token tasks only; allowed: {LM_TASKS}, got {name!r}")
    _check_sizes(n_train=n_train, n_val=n_val, n_test=n_test)
    tr, va, te = (_mix(names, s, n, seed) for s, n in zip(SPLITS, (n_train, n_val, n_test)))
    return SequenceTask(_as_data(tr, te), _as_data(tr, va), names)


def pretraining_mixture(seed: int = 0, **sizes) -> SequenceTask:
    """The pre-training mixture: ``add, sub, copy, reverse, grammar``."""
    return mixture(PRETRAIN_TASKS, seed, **sizes)


def shifted_mixture(seed: int = 0, **sizes) -> SequenceTask:
    """The shifted fine-tuning mixture: ``mul`` (new operation), ``map`` (permuted sub-vocabulary),
    ``grammar_shifted`` (changed rule)."""
    return mixture(SHIFTED_TASKS, seed, **sizes)
