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
from typing import Any, Sequence

import numpy as np

from ..conventions import FORMAT1, Conventions
from ..errors import BadInputError, UsageError
from ..vocab import Vocab, content_ids, tokenize

ZOO = Conventions(src=FORMAT1, tgt=FORMAT1)  # the zoo's ids and framing (EOS appended)

RANDOM_MAX_LEN = 16


@dataclass
class VerifyInputs:
    """Sources (id lists as the model sees them: the bundle's framing applied), references
    (target tokens) or None, and where they come from."""

    sources: list[list[int]]
    references: list[list[str]] | None
    description: str
    task: str | None = None


def _check(sources: list[list[int]], src_vocab: Vocab, max_src_len: int, what: str, conv: Conventions) -> None:
    if not sources:
        raise BadInputError(f"{what} has no sentences", "pass at least one source")
    eos = conv.src.eos if conv.framing.append_eos else None
    for n, s in enumerate(sources):
        if not s or (eos is not None and s[-1] != eos):
            raise BadInputError(f"source {n} of {what} does not end with EOS (the bundle's framing appends it)",
                                f"append EOS (id {eos})" if eos is not None else "pass a non-empty source")
        if min(s) < 0 or max(s) >= len(src_vocab):
            raise BadInputError(f"source {n} of {what} has ids outside 0..{len(src_vocab) - 1}",
                                "encode it with the bundle's source vocabulary")
        if len(s) > max_src_len:
            raise BadInputError(f"source {n} of {what} has {len(s)} tokens (framing included), more than the "
                                f"bundle's max_src_len {max_src_len}", "shorten it or re-export with a larger "
                                "--max-src-len")


def _splitter(tokenizer: str | Any) -> Any:
    return (lambda text: tokenize(text, tokenizer)) if isinstance(tokenizer, str) else tokenizer.tokenize


def _limit(limit: int) -> int:
    if int(limit) < 1:
        raise UsageError(f"--limit must be >= 1 (got {limit})", "pass a positive number of sentences")
    return int(limit)


def from_file(path: str | Path, src_vocab: Vocab, src_tokenizer: str | Any, tgt_tokenizer: str | Any,
              max_src_len: int, limit: int, conv: Conventions = ZOO) -> VerifyInputs:
    """The first ``limit`` lines of ``path`` (``source[TAB reference]``), tokenized by the
    bundle's ``text.TextProcessor`` of each side (or a format-1 kind: ``char``, ``word``)."""
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
    src_split, tgt_split = _splitter(src_tokenizer), _splitter(tgt_tokenizer)
    sources = [conv.frame(src_vocab.encode(src_split(p[0]))) for p in pairs]
    refs = [tgt_split(p[1]) for p in pairs] if all(with_ref) else None
    _check(sources, src_vocab, max_src_len, str(path), conv)
    return VerifyInputs(sources, refs, f"file {path} ({len(sources)} lines{', with references' if refs else ''})")


def from_task(name: str, src_vocab: Vocab, max_src_len: int, limit: int, seed: int = 0,
              conv: Conventions = ZOO) -> VerifyInputs:
    """``limit`` examples evenly spaced over the test split of task ``name``."""
    from ..train.data import load_task

    limit = _limit(limit)
    task = load_task(name, seed=seed)
    pairs = task.test
    step = max(1, len(pairs) // limit)
    picked = [p for p in pairs[::step][:limit] if len(p[0]) + conv.framing.extra_tokens() <= max_src_len]
    sources = [conv.frame(src_vocab.encode(list(s))) for s, _ in picked]
    _check(sources, src_vocab, max_src_len, f"task {name}", conv)
    return VerifyInputs(sources, [list(t) for _, t in picked],
                        f"task {name}, test split ({len(sources)} of {len(pairs)} examples)", task=name)


def random_sources(src_vocab: Vocab, max_src_len: int, limit: int, seed: int = 0,
                   conv: Conventions = ZOO) -> VerifyInputs:
    """``limit`` random sources of ordinary tokens (lengths 1..16 framing included, capped by
    ``max_src_len``)."""
    limit = _limit(limit)
    rng = np.random.default_rng(seed)
    extra = conv.framing.extra_tokens()
    hi = max(1, min(RANDOM_MAX_LEN, max_src_len))
    ids = content_ids(len(src_vocab), conv.src)
    sources = []
    for _ in range(limit):
        n = max(int(rng.integers(1, hi + 1)) - extra, 0 if extra else 1)
        sources.append(conv.frame([int(ids[j]) for j in rng.integers(0, len(ids), n)]))
    return VerifyInputs(sources, None, f"random sources ({limit}, lengths 1..{hi}, seed {seed})")


def from_ids(sources: Sequence[Sequence[int]], src_vocab: Vocab, max_src_len: int,
             references: Sequence[Sequence[str]] | None = None, description: str = "given sources",
             conv: Conventions = ZOO) -> VerifyInputs:
    """Sources given as id lists as the model sees them (framing included), checked."""
    srcs = [[int(x) for x in s] for s in sources]
    _check(srcs, src_vocab, max_src_len, description, conv)
    refs = None if references is None else [list(r) for r in references]
    if refs is not None and len(refs) != len(srcs):
        raise BadInputError(f"{len(refs)} references for {len(srcs)} sources", "pass one reference per source")
    return VerifyInputs(srcs, refs, description)


__all__ = ["VerifyInputs", "from_file", "from_ids", "from_task", "random_sources"]
