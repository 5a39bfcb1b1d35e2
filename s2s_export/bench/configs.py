"""What a benchmark measures: the spec (one model + bundle, shared inputs, search settings,
iteration counts), the worker configurations (one fresh process each) and the inputs.

Worker configurations (``plan``), in the order they run:

* ``torch`` with ``threads=None``: PyTorch eager as the user gets it (library defaults: no
  thread setting, no thread environment variables, oneDNN as shipped) - the status quo;
* ``torch`` for every thread count x oneDNN (``torch.backends.mkldnn.enabled``) on/off: the
  tuning grid; the best setting per figure is the honest baseline;
* ``onnxruntime`` FP32 (and INT8 when the bundle has int8 graphs) for every thread count, and
  for more than one thread with each spinning policy (``spin``: ``off``, idle threads sleep
  and every parallel region pays a wake-up; ``step``, the runtime's default, the decoder step's
  threads busy-wait between steps; ``all``, the encoder's too);
* ``floor`` for every thread count: the step's matrix products as numpy BLAS calls.

Torch-free (the harness process never imports torch: torch lives in the workers only).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..conventions import FORMAT1, Specials
from ..errors import UsageError
from ..vocab import content_ids

ENGINES = ("torch", "onnxruntime", "floor")
DEFAULT_COMBOS = ((1, 1), (32, 5))  # (batch, beam): greedy batch 1, beam 5 batch 32

# The NMT-sized reference model of the published table (random weights: speed only).
NMT_CONFIG: dict[str, Any] = dict(
    src_vocab_size=8000, tgt_vocab_size=8000, cell="lstm", emb_size=256, enc_hidden=256,
    dec_hidden=512, enc_layers=2, dec_layers=2, bidirectional=True, attention="general",
    placement="top", query="post", input_feeding=True, bridge="linear", dropout=0.0)


@dataclass(frozen=True)
class WorkerConfig:
    """One measured configuration (one fresh process).

    ``threads``: intra-op threads (torch.set_num_threads / ORT intra_op_num_threads / BLAS),
    also exported as OMP/MKL/OPENBLAS_NUM_THREADS; ``None`` = library defaults (torch status
    quo only). ``mkldnn``: torch's oneDNN switch (``None`` = as shipped). ``precision``: the
    bundle graphs, ``spin``: which ORT sessions' intra-op threads busy-wait (onnxruntime only:
    ``off``, ``step`` or ``all``, see ``runtime.backends.base.SPINNING``)."""

    engine: str
    threads: int | None
    precision: str = "fp32"
    mkldnn: bool | None = None
    spin: str = "off"

    @property
    def label(self) -> str:
        if self.engine == "torch":
            if self.threads is None and self.mkldnn is None:
                return "torch default"
            onednn = "" if self.mkldnn is None else (" onednn" if self.mkldnn else " no-onednn")
            return f"torch {self.threads}t{onednn}"
        if self.engine == "onnxruntime":
            return f"ort {self.precision} {self.threads}t{'' if self.spin == 'off' else ' spin-' + self.spin}"
        return f"floor {self.threads}t"

    @property
    def is_default_torch(self) -> bool:
        return self.engine == "torch" and self.threads is None and self.mkldnn is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WorkerConfig":
        if isinstance(d.get("spin"), bool):  # results written before the spinning policies
            d = {**d, "spin": "all" if d["spin"] else "off"}
        return cls(**d)


@dataclass
class BenchSpec:
    """One benchmark: a checkpoint and its bundle, measured on the same inputs.

    ``sources``: source id lists (EOS not included: every engine appends it). A decode pass at
    (batch, beam) translates ``max(batch, sentences)`` of them in batches of ``batch``
    (the pool is cycled when shorter). Per-step and encoder latency use ``latency_source``
    (default: the pool's median-length sentence). ``iters`` decode passes, ``step_iters``
    steps and ``encoder_iters`` encoder runs are timed after ``warmup`` untimed ones. With
    ``rounds`` > 1 every configuration runs again (in reverse order, alternating), and each
    figure keeps its best round: a load spike from another process then spoils one round of
    one configuration, not the comparison."""

    bundle: Path
    model: Path
    sources: list[list[int]]
    name: str = "model"
    combos: tuple[tuple[int, int], ...] = DEFAULT_COMBOS
    threads: tuple[int, ...] = (1, 2)
    precisions: tuple[str, ...] = ("fp32", "int8")
    torch_grid: bool = True
    ort_spin: bool = True
    rounds: int = 1
    iters: int = 5
    warmup: int = 1
    step_iters: int = 200
    encoder_iters: int = 50
    sentences: int = 16
    max_length: int = 200
    max_length_ratio: float | None = None
    latency_source: list[int] | None = None
    timeout_s: float = 1800.0
    trust_pickle: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> "BenchSpec":
        def bad(cond: bool, what: str, fix: str) -> None:
            if cond:
                raise UsageError(what, fix)

        bad(not self.sources or any(len(s) == 0 for s in self.sources),
            "the benchmark needs non-empty source sentences", "pass --inputs with non-empty lines")
        bad(not self.combos or any(b < 1 or w < 1 for b, w in self.combos),
            f"batch sizes and beams must be >= 1 (got {list(self.combos)})", "pass e.g. --batch 1,32 --beam 1,5")
        bad(not self.threads or any(t < 1 for t in self.threads),
            f"thread counts must be >= 1 (got {list(self.threads)})", "pass e.g. --threads 1,2")
        bad(self.iters < 1 or self.step_iters < 1 or self.encoder_iters < 1 or self.warmup < 0 or self.rounds < 1,
            "iteration counts must be >= 1 (warm-up >= 0)", "pass --iters 1 or more")
        bad(self.max_length < 1, f"max_length must be >= 1 (got {self.max_length})", "pass a positive value")
        bad(any(p not in ("fp32", "int8") for p in self.precisions),
            f"precisions must be fp32/int8 (got {list(self.precisions)})", "use fp32 and/or int8")
        return self

    def pass_sources(self, batch: int) -> list[list[int]]:
        """The sentences of one decode pass at ``batch``."""
        n = max(batch, self.sentences)
        return [list(self.sources[i % len(self.sources)]) for i in range(n)]

    def latency_ids(self) -> list[int]:
        if self.latency_source is not None:
            return list(self.latency_source)
        by_len = sorted(self.sources, key=len)
        return list(by_len[len(by_len) // 2])

    def batch_sizes(self) -> list[int]:
        return sorted({b for b, _ in self.combos})

    def workload(self) -> dict[str, Any]:
        """The JSON every worker gets (identical inputs for every configuration)."""
        return {"combos": [list(c) for c in self.combos],
                "passes": {str(b): self.pass_sources(b) for b in self.batch_sizes()},
                "latency_source": self.latency_ids(), "iters": self.iters, "warmup": self.warmup,
                "step_iters": self.step_iters, "encoder_iters": self.encoder_iters,
                "max_length": self.max_length, "max_length_ratio": self.max_length_ratio}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bundle"], d["model"] = str(self.bundle), str(self.model)
        d["n_sources"] = len(d.pop("sources"))
        return d


def plan(spec: BenchSpec, int8: bool = True) -> list[WorkerConfig]:
    """The worker configurations of ``spec`` in run order (see the module docstring)."""
    configs = [WorkerConfig("torch", None)]
    for t in spec.threads:
        for onednn in ((True, False) if spec.torch_grid else (None,)):
            configs.append(WorkerConfig("torch", t, mkldnn=onednn))
    for precision in spec.precisions:
        if precision == "int8" and not int8:
            continue
        for t in spec.threads:
            configs.append(WorkerConfig("onnxruntime", t, precision=precision))
            if t > 1 and spec.ort_spin:
                configs += [WorkerConfig("onnxruntime", t, precision=precision, spin=policy)
                            for policy in ("step", "all")]
    configs += [WorkerConfig("floor", t) for t in spec.threads]
    return configs


def save_nmt_checkpoint(path: Path) -> Any:
    """Write the NMT-sized model (``NMT_CONFIG``, random weights from seed 0, placeholder
    vocabularies with the zoo's special ids) as an s2s-export checkpoint at ``path`` and return
    the ``Seq2Seq`` module (eval mode). Speed benchmarks only; imports torch."""
    import torch

    from ..conventions import specials_of
    from ..export.api import placeholder_vocab
    from ..models import ModelConfig, Seq2Seq
    from ..models.checkpoint import Checkpoint, save_checkpoint
    from ..vocab import Vocab

    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(**NMT_CONFIG)).eval()
    vocab = Vocab(tuple(placeholder_vocab(model.config.src_vocab_size, specials_of(model)[0])))
    save_checkpoint(path, Checkpoint(model, vocab, vocab, "word", {"note": "random weights (speed only)"}))
    return model


def random_sources(vocab_size: int, n: int, min_len: int, max_len: int, seed: int = 0,
                   specials: Specials = FORMAT1) -> list[list[int]]:
    """``n`` random source id lists of ordinary tokens (not ``specials``), lengths
    min_len..max_len (before the bundle's framing)."""
    ids = content_ids(vocab_size, specials)
    if len(ids) < 1 or vocab_size <= len(specials.ids()) or not 1 <= min_len <= max_len:
        raise UsageError(f"cannot draw sources of {min_len}..{max_len} tokens from {vocab_size} ids",
                         "pass --src-len MIN,MAX with 1 <= MIN <= MAX")
    rng = random.Random(seed)
    return [[ids[rng.randrange(len(ids))] for _ in range(rng.randint(min_len, max_len))] for _ in range(n)]


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """``"1,32"`` -> (1, 32) (a CLI list option)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers (got {text!r})", f"pass e.g. --{what} 1,2") from None
    if not values:
        raise UsageError(f"{what} is empty", f"pass e.g. --{what} 1,2")
    return values


def combos(batches: Sequence[int], beams: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Every (batch, beam) pair."""
    return tuple((b, w) for b in batches for w in beams)


__all__ = ["BenchSpec", "DEFAULT_COMBOS", "ENGINES", "NMT_CONFIG", "WorkerConfig", "combos", "parse_ints",
           "plan", "random_sources"]
