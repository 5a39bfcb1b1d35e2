"""Reading OpenNMT-py 1.x/2.x checkpoints without torchtext or OpenNMT-py, and without running
code from them.

Their ``vocab`` entry is the pickled fields dict of the tool (1.2.0/2.3.0
``onmt/inputters/inputter.py`` ``get_fields``, ``model_saver.py``): ``{"src": TextMultiField,
"tgt": TextMultiField, "indices": Field, "corpus_id": Field, ...}``, a ``TextMultiField``
holding ``fields = [(name, Field), ...]`` (the base field first), a ``Field`` holding a
torchtext ``Vocab`` (``itos`` list, ``stoi`` dict, ``freqs`` Counter, ``unk_index``), a ``tokenize``
``functools.partial(_feature_tokenize, ...)`` and torchtext's ``_split_tokenizer`` (the globals
real 1.2.0/2.3.0 files name, listed with pickletools).

``STAND_INS`` maps exactly the globals those pickles name to plain-data classes registered
under the real module paths (torch's ``weights_only`` unpickler with
``torch.serialization.safe_globals``, the ``(object, "module.name")`` form): the objects are
rebuilt as attribute bags and nothing of torchtext or OpenNMT-py runs. Any other global is
refused by the unpickler.
"""

from __future__ import annotations

import collections
from typing import Any


class _Bag:
    """A pickled object rebuilt as plain attributes (its ``__dict__`` state, or ``_state``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self._state = state


class Field(_Bag):
    """torchtext ``Field``/``RawField``/``LabelField`` (0.4-0.5; ``torchtext.legacy`` 0.9-0.11)."""


class Vocab(_Bag):
    """torchtext ``Vocab``: ``itos`` (token list, id order), ``stoi``, ``freqs``, ``unk_index``."""


class TextMultiField(_Bag):
    """onmt ``TextMultiField``: ``fields`` = [(name, Field), ...], the base field first."""


class Function(_Bag):
    """A function the pickle refers to by name (``_feature_tokenize``, ``make_src``, ...): never
    called while loading; calling it afterwards does nothing."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return None


class Partial(_Bag):
    """``functools.partial``: keeps the wrapped stand-in and its arguments, calls nothing."""


def _defaultdict(*args: Any) -> collections.defaultdict:
    """``collections.defaultdict`` rebuilt without its default factory (a function of the
    pickle's, which is not called)."""
    return collections.defaultdict(None)


_FUNCTIONS = (
    "onmt.inputters.text_dataset._feature_tokenize",
    "onmt.inputters.inputter.make_src",
    "onmt.inputters.inputter.make_tgt",
    "onmt.inputters.dataset_base._dynamic_dict",
    "torchtext.vocab._default_unk_index",
    "torchtext.data.utils._split_tokenizer",
    "torchtext.legacy.data.utils._split_tokenizer",
)

# every global an OpenNMT-py 1.x/2.x text checkpoint pickles, by its full path
STAND_INS: dict[str, Any] = {
    "torchtext.data.field.Field": Field,
    "torchtext.data.field.RawField": Field,
    "torchtext.data.field.LabelField": Field,
    "torchtext.legacy.data.field.Field": Field,
    "torchtext.legacy.data.field.RawField": Field,
    "torchtext.legacy.data.field.LabelField": Field,
    "torchtext.vocab.Vocab": Vocab,
    "torchtext.legacy.vocab.Vocab": Vocab,
    "onmt.inputters.text_dataset.TextMultiField": TextMultiField,
    "onmt.inputters.inputter.AlignField": Field,
    "functools.partial": Partial,
    "collections.defaultdict": _defaultdict,
    **{name: Function() for name in _FUNCTIONS},
}


def safe_globals() -> list[tuple[Any, str]]:
    """The ``(stand-in, "module.name")`` list for ``torch.serialization.safe_globals``."""
    return [(obj, name) for name, obj in STAND_INS.items()]


def is_legacy_global(name: str) -> bool:
    return name in STAND_INS


def field_vocab(fields: Any, side: str) -> list[str]:
    """The token list (``itos``) of ``fields[side]``'s base field; ``ValueError`` naming what is
    missing when the layout is not the 1.x/2.x one."""
    if not isinstance(fields, dict) or side not in fields:
        raise ValueError(f"its vocab has no {side!r} field")
    multi = fields[side]
    base = multi
    subfields = getattr(multi, "fields", None)
    if subfields is not None:  # TextMultiField: [(name, Field), ...]
        if not subfields:
            raise ValueError(f"its {side!r} field has no sub-fields")
        base = subfields[0][1]
    itos = getattr(getattr(base, "vocab", None), "itos", None)
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        raise ValueError(f"its {side!r} field has no vocabulary (itos)")
    return list(itos)


def n_feature_fields(fields: Any, side: str) -> int:
    """How many word-feature fields ``fields[side]`` carries beyond its tokens."""
    sub = getattr(fields.get(side) if isinstance(fields, dict) else None, "fields", None)
    return max(len(sub) - 1, 0) if isinstance(sub, list) else 0


def field_token(fields: Any, side: str, attr: str) -> Any:
    """``pad_token``/``init_token``/``eos_token``/``unk_token`` of ``fields[side]``'s base field
    (None when the pickle has none)."""
    multi = fields.get(side)
    sub = getattr(multi, "fields", None)
    base = sub[0][1] if isinstance(sub, list) and sub else multi
    return getattr(base, attr, None)


__all__ = ["STAND_INS", "field_token", "field_vocab", "is_legacy_global", "n_feature_fields", "safe_globals"]
