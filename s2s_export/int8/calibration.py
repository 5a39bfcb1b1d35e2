"""Calibration data for static INT8: the float32 graphs' real inputs (torch-free).

The encoder is fed real source batches; the decoder step is fed exactly what it receives during
greedy decoding of those sources with the float32 graphs (the runtime's own search over the ONNX
Runtime backend, recorded: tokens, reorder, static and state tensors of every step, with finished
sentences leaving the batch as they do at inference time).

Sources: a text file (one source per line, tokenized with the bundle's source tokenizer through
``Translator.encode``), or, without a file, sources generated from the source vocabulary
(``generated_sources``: uniformly random ordinary tokens, uniformly random lengths).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np

from ..conventions import FORMAT1, Specials
from ..errors import BadInputError
from ..vocab import content_ids

DEFAULT_SOURCES = 256  # calibration sources (generated, or the first lines of a file)
BATCH = 64  # sentences per calibration batch (fewer, larger runs: calibration time)
GENERATED_MAX_LEN = 24  # generated source lengths: 1..min(this, max_src_len - 1) tokens
MAX_STEPS = 100  # greedy steps per calibration batch at most


def generated_sources(vocab_size: int, max_src_len: int, count: int = DEFAULT_SOURCES,
                      seed: int = 0, specials: Specials = FORMAT1, framing_tokens: int = 1) -> list[list[int]]:
    """``count`` source id lists (before the framing) of ordinary tokens of a ``vocab_size``
    vocabulary (none of ``specials``), lengths uniform in 1..min(GENERATED_MAX_LEN, max_src_len -
    framing_tokens); deterministic (``seed``)."""
    rng = random.Random(seed)
    ids = content_ids(vocab_size, specials)
    longest = max(1, min(GENERATED_MAX_LEN, max_src_len - framing_tokens))
    return [[ids[rng.randrange(len(ids))] for _ in range(rng.randint(1, longest))] for _ in range(count)]


def file_sources(translator: Any, path: str | os.PathLike[str], count: int = DEFAULT_SOURCES) -> list[list[int]]:
    """Source ids of the first ``count`` non-empty lines of ``path`` (UTF-8), tokenized with the
    bundle's source tokenizer (``Translator.encode``). ``BadInputError`` for a missing,
    unreadable or empty file, or a line longer than the bundle's ``max_src_len``."""
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise BadInputError(f"calibration file {path} does not exist", "pass an existing text file") from None
    except UnicodeDecodeError:
        raise BadInputError(f"calibration file {path} is not UTF-8 text",
                            "pass a UTF-8 text file, one source per line") from None
    except OSError as exc:
        raise BadInputError(f"cannot read calibration file {path} ({exc.strerror})",
                            "pass a readable text file") from None
    lines = [line for line in lines if line][:count]
    if not lines:
        raise BadInputError(f"calibration file {path} has no non-empty line",
                            "pass a text file with one source per line")
    return translator.encode(lines)


def _recording_backend(cls: type) -> type:
    """A subclass of the ONNX Runtime backend class ``cls`` that keeps a copy of every feed of
    its encoder and step sessions (``encoder_feeds``, ``step_feeds``)."""

    class Recording(cls):  # type: ignore[valid-type, misc]
        encoder_feeds: list[dict[str, np.ndarray]]
        step_feeds: list[dict[str, np.ndarray]]

        def _run(self, session: Any, inputs: dict[str, Any], names: list[str], what: str) -> dict[str, Any]:
            if session is self.encoder:
                self.encoder_feeds.append(dict(inputs))
            elif session is self.step_session:
                self.step_feeds.append(dict(inputs))
            return super()._run(session, inputs, names, what)

    return Recording


def collect_feeds(bundle_dir: str | os.PathLike[str], calibrate: str | os.PathLike[str] | None = None,
                  count: int = DEFAULT_SOURCES, seed: int = 0
                  ) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """(encoder feeds, decoder step feeds): the inputs the bundle's float32 graphs receive when
    greedy-decoding ``count`` calibration sources (the ``calibrate`` file's first lines, or
    generated ones) in batches of ``BATCH``, at most ``MAX_STEPS`` steps. A feed is a dict of
    numpy arrays named as the graph's inputs: encoder ``src`` [B, S] int64 and ``src_lengths``
    [B] int64; step ``tokens`` [B] int64, ``reorder`` [B] int64 and the static and state tensors
    the step reads (shapes and dtypes of the manifest's IO), B shrinking as sentences finish.
    Raises ``BundleError`` for an unusable bundle, ``BadInputError`` for an unusable file."""
    from ..bundle import load_manifest
    from ..runtime import Translator
    from ..runtime.backends.onnxruntime import OnnxRuntimeBackend, graph_files

    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    encoder, step = graph_files(bundle_dir, manifest, "fp32")
    backend = _recording_backend(OnnxRuntimeBackend)(encoder, step, manifest.io, intra_op_threads=1,
                                                     spinning="off")
    backend.encoder_feeds, backend.step_feeds = [], []
    translator = Translator(manifest, backend, bundle_dir)
    if calibrate is not None:
        sources = file_sources(translator, calibrate, count)
    else:
        sources = generated_sources(len(manifest.src_vocab), manifest.max_src_len, count, seed,
                                    manifest.src_specials, manifest.framing.extra_tokens())
    translator.translate_ids(sources, beam_size=1, max_batch_size=BATCH, max_length=MAX_STEPS)
    return backend.encoder_feeds, backend.step_feeds


__all__ = ["BATCH", "DEFAULT_SOURCES", "collect_feeds", "file_sources", "generated_sources"]
