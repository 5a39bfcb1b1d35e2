"""The sentences ``s2s verify`` runs on (torch-free).

* a data file: one source per line, optionally ``TAB`` + reference (every line or none);
  tokenized with the bundle's tokenizers, unknown tokens -> ``<unk>``;
* a task's test split (``reverse``, ``copy``, ``sort``: the default generated task;
  ``g2p``: CMUdict), ``limit`` examples evenly spaced over the split;
* random sources from the source vocabulary (lengths 1..16 with EOS, seeded).

Every source is an id list ending with EOS, at most the bundle's ``max_src_len`` long.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BadInputError, UsageError
from ..vocab import EOS_ID, Vocab, content_ids, tokenize

RANDOM_MAX_LEN = 16


@dataclass
class VerifyInputs:
    """Sources (id lists, EOS last), references (target tokens) or None, and where they come from."""

    sources: list[list[int]]
    references: list[list[str]] | None
    description: str
    task: str | None = None


def _check(sources: list[list[int]], src_vocab: Vocab, max_src_len: int, what: str) -> None:
    if not sources:
        raise BadInputError(f"{what} has no sentences", "pass at least one source")
    for n, s in enumerate(sources):
        if not s or s[-1] != EOS_ID:
            raise BadInputError(f"source {n} of {what} does not end with EOS", "append EOS (id 2)")
        if min(s) < 0 or max(s) >= len(src_vocab):
            raise BadInputError(f"source {n} of {what} has ids outside 0..{len(src_vocab) - 1}",
                                "encode it with the bundle's source vocabulary")
        if len(s) > max_src_len:
            raise BadInputError(f"source {n} of {what} has {len(s)} tokens (EOS included), more than the "
                                f"bundle's max_src_len {max_src_len}", "shorten it or re-export with a larger "
                                "--max-src-len")


def _limit(limit: int) -> int:
    if int(limit) < 1:
        raise UsageError(f"--limit must be >= 1 (got {limit})", "pass a positive number of sentences")
    return int(limit)


def from_file(path: str | Path, src_vocab: Vocab, src_tokenizer: str, tgt_tokenizer: str, max_src_len: int,
              limit: int) -> VerifyInputs:
    """The first ``limit`` lines of ``path`` (``source[TAB reference]``)."""
    limit = _limit(limit)
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {path} ({exc.strerror})", "pass an existing text file") from None
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path} is not UTF-8 text (byte {exc.start})", "convert it to UTF-8") from None
    lines = [ln for ln in text.splitlines() if ln.strip()][:limit]
    if not lines:
        raise BadInputError(f"{path} has no non-empty lines", "write one source per line (optionally TAB + reference)")
    with_ref = ["\t" in ln for ln in lines]
    if any(with_ref) and not all(with_ref):
        n = with_ref.index(False) if with_ref[0] else with_ref.index(True)
        raise BadInputError(f"line {n + 1} of {path} breaks the format of line 1 (some lines have a TAB + "
                            "reference, others not)", "give every line a reference, or none")
    pairs = [ln.split("\t", 1) if all(with_ref) else [ln] for ln in lines]
    sources = [src_vocab.encode(tokenize(p[0], src_tokenizer), add_eos=True) for p in pairs]
    refs = [tokenize(p[1], tgt_tokenizer) for p in pairs] if all(with_ref) else None
    _check(sources, src_vocab, max_src_len, str(path))
    return VerifyInputs(sources, refs, f"file {path} ({len(sources)} lines{', with references' if refs else ''})")


def from_task(name: str, src_vocab: Vocab, max_src_len: int, limit: int, seed: int = 0) -> VerifyInputs:
    """``limit`` examples evenly spaced over the test split of task ``name``."""
    from ..train.data import load_task

    limit = _limit(limit)
    task = load_task(name, seed=seed)
    pairs = task.test
    step = max(1, len(pairs) // limit)
    picked = [p for p in pairs[::step][:limit] if len(p[0]) + 1 <= max_src_len]
    sources = [src_vocab.encode(list(s), add_eos=True) for s, _ in picked]
    _check(sources, src_vocab, max_src_len, f"task {name}")
    return VerifyInputs(sources, [list(t) for _, t in picked],
                        f"task {name}, test split ({len(sources)} of {len(pairs)} examples)", task=name)


def random_sources(src_vocab: Vocab, max_src_len: int, limit: int, seed: int = 0) -> VerifyInputs:
    """``limit`` random sources (lengths 1..16 EOS included, capped by ``max_src_len``)."""
    limit = _limit(limit)
    rng = np.random.default_rng(seed)
    hi = max(1, min(RANDOM_MAX_LEN, max_src_len))
    lo_id, hi_id = content_ids(len(src_vocab))
    sources = []
    for _ in range(limit):
        n = int(rng.integers(1, hi + 1))
        sources.append([int(x) for x in rng.integers(lo_id, hi_id, n - 1)] + [EOS_ID])
    return VerifyInputs(sources, None, f"random sources ({limit}, lengths 1..{hi}, seed {seed})")


def from_ids(sources: Sequence[Sequence[int]], src_vocab: Vocab, max_src_len: int,
             references: Sequence[Sequence[str]] | None = None, description: str = "given sources") -> VerifyInputs:
    """Sources given as id lists (EOS last), checked."""
    srcs = [[int(x) for x in s] for s in sources]
    _check(srcs, src_vocab, max_src_len, description)
    refs = None if references is None else [list(r) for r in references]
    if refs is not None and len(refs) != len(srcs):
        raise BadInputError(f"{len(refs)} references for {len(srcs)} sources", "pass one reference per source")
    return VerifyInputs(srcs, refs, description)


__all__ = ["VerifyInputs", "from_file", "from_ids", "from_task", "random_sources"]
