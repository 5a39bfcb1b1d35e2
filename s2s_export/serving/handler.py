"""What the Triton model does with a batch of requests, free of Triton (torch-free, testable).

The Python-backend ``model.py`` (``serving/model.py``) only moves tensors between Triton and
these functions. A request carries (KServe v2 input names; N = rows of the request):

* ``text`` BYTES [N,1]: UTF-8 sources (required);
* ``beam_size`` INT32 [N,1], ``n_best`` INT32 [N,1]: optional search options, one value for the
  whole request (repeated on every row, since Triton gives every input of a request the same
  batch size). An option a request leaves out is the runtime's default for the bundle: only the
  options a request carries are passed to ``Translator.translate``.

and gets back ``translation`` BYTES [N,1] (best hypothesis), ``score`` FP32 [N,1] (its score:
cumulative log-prob / length penalty), ``translations`` BYTES [N,n] and ``scores`` FP32 [N,n]
(the n best, best first; n = the largest number of hypotheses of a row, shorter rows padded with
``b""`` and NaN). Requests with the same options are translated together in one
``Translator.translate`` call (the point of Triton's dynamic batching); a request that is
invalid gets an error naming the input and the fix, and the others of its batch are answered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import S2SError

# KServe v2 tensor names and Triton types (config.pbtxt is written from these)
TEXT = "text"
OPTION_INPUTS = ("beam_size", "n_best")  # request input name == Translator.translate keyword
INPUTS = {TEXT: "TYPE_STRING", "beam_size": "TYPE_INT32", "n_best": "TYPE_INT32"}
OUTPUTS = {"translation": ("TYPE_STRING", 1), "score": ("TYPE_FP32", 1),
           "translations": ("TYPE_STRING", -1), "scores": ("TYPE_FP32", -1)}
# config.pbtxt parameters -> Translator.load keywords (strings in the config; only those given)
LOAD_PARAMETERS = ("backend", "precision", "intra_op_threads", "spinning")


class RequestError(Exception):
    """A request that cannot be answered; the message (one line: what is wrong; the fix) goes
    back to the client as the request's error (Triton: INVALID_ARG, HTTP 400)."""


class TranslationError(Exception):
    """A valid request whose translation failed (Triton: INTERNAL, HTTP 500)."""


@dataclass
class Request:
    """One parsed request: its source texts and the search options it carries."""

    texts: list[str]
    options: dict[str, int]


def load_options(parameters: Mapping[str, str]) -> dict[str, Any]:
    """config.pbtxt ``parameters`` (strings) -> ``Translator.load`` keywords (only those set)."""
    out: dict[str, Any] = {}
    for key in LOAD_PARAMETERS:
        value = parameters.get(key, "")
        if value != "":
            out[key] = int(value) if key == "intra_op_threads" else value
    return out


def gpu_environment(kind: str, device_id: str | int | None) -> None:
    """Make a GPU instance's device the only one its process sees (each Python-backend instance
    is a process of its own); call before the backend starts CUDA. No effect on CPU instances."""
    if kind.upper() == "GPU" and device_id is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(device_id)


def parse_request(arrays: Mapping[str, np.ndarray | None]) -> Request:
    """Input arrays of one request (``text`` [N,1] object bytes; optional ``beam_size``,
    ``n_best`` [N,1] int) -> ``Request``. Raises ``RequestError`` naming the input."""
    text = arrays.get(TEXT)
    if text is None:
        raise RequestError(f"request has no input {TEXT!r}; send the sources as BYTES [N,1]")
    flat = np.asarray(text, dtype=object).reshape(-1)
    texts = []
    for row, item in enumerate(flat):
        if isinstance(item, str):
            texts.append(item)
            continue
        try:
            texts.append(bytes(item).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise RequestError(f"input {TEXT!r} row {row} is not UTF-8 (byte {exc.start}); "
                               "send UTF-8 text") from None
    options: dict[str, int] = {}
    for name in OPTION_INPUTS:
        value = arrays.get(name)
        if value is None:
            continue
        values = np.asarray(value).reshape(-1)
        if values.size == 0 or values.dtype.kind not in "iu":
            raise RequestError(f"input {name!r} must hold integers (got {values.dtype} of {values.size} "
                               f"values); send {name} as INT32 [N,1]")
        if (values != values[0]).any():
            raise RequestError(f"input {name!r} must hold one value for the whole request (got "
                               f"{sorted(set(values.tolist()))}); send one request per {name}")
        options[name] = int(values[0])
    return Request(texts, options)


def check_request(translator: Any, request: Request) -> None:
    """Validate a request's options and sources as the API does (``Translator.translate`` on no
    input validates the options without any work; ``Translator.encode`` checks the lengths):
    ``RequestError`` with the runtime's message, which names the option by its input name."""
    try:
        translator.translate([], **request.options)
    except S2SError as exc:
        problem = exc.problems[0]
        raise RequestError(f"bad request option: {problem.what}; {_option_fix(problem.what, translator)}") from None
    try:
        translator.encode(request.texts)
    except S2SError as exc:
        message = str(exc.problems[0])  # "input 3 has ...": row 3 of this request
        message = "row " + message[len("input "):] if message.startswith("input ") else message
        raise RequestError(f"bad input {TEXT!r}: {message}") from None


def _option_fix(what: str, translator: Any) -> str:
    """The fix for a refused option, in the request's terms (the API's fix may name keywords
    a request cannot send, such as ``full_distribution``)."""
    if what.startswith("n_best"):
        return "send n_best between 1 and beam_size (and beam_size as an input when n_best > 1)"
    if what.startswith("beam_size"):
        return f"send beam_size between 1 and {translator.backend.topk} (the bundle's top-K)"
    return "fix the request's options"


def outputs(hypotheses: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """Per-row hypothesis lists (``Hypothesis``: ``.text``, ``.score``) -> the output arrays."""
    n = max([len(h) for h in hypotheses] + [1])
    texts = np.full((len(hypotheses), n), b"", dtype=object)
    scores = np.full((len(hypotheses), n), np.nan, dtype=np.float32)
    for row, hyps in enumerate(hypotheses):
        for j, h in enumerate(hyps):
            texts[row, j] = h.text.encode("utf-8")
            scores[row, j] = h.score
    return {"translation": texts[:, :1].copy(), "score": scores[:, :1].copy(),
            "translations": texts, "scores": scores}


def answer(translator: Any, arrays: Sequence[Mapping[str, np.ndarray | None]]
           ) -> list[dict[str, np.ndarray] | RequestError | TranslationError]:
    """A batch of requests (their input arrays) -> per request its output arrays, or the error
    to send back. Requests with the same options are translated in one call."""
    results: list[dict[str, np.ndarray] | RequestError | TranslationError] = [
        TranslationError("not answered")] * len(arrays)
    groups: dict[tuple[tuple[str, int], ...], list[tuple[int, Request]]] = {}
    for i, item in enumerate(arrays):
        try:
            request = parse_request(item)
            check_request(translator, request)
        except RequestError as exc:
            results[i] = exc
            continue
        groups.setdefault(tuple(sorted(request.options.items())), []).append((i, request))
    for key, members in groups.items():
        texts = [t for _, r in members for t in r.texts]
        try:
            hyps = translator.translate(texts, **dict(key))
        except S2SError as exc:
            for i, _ in members:
                results[i] = TranslationError(f"translation failed: {exc.problems[0]}")
            continue
        start = 0
        for i, request in members:
            results[i] = outputs(hyps[start:start + len(request.texts)])
            start += len(request.texts)
    return results


__all__ = ["INPUTS", "OPTION_INPUTS", "OUTPUTS", "Request", "RequestError", "TEXT", "TranslationError",
           "answer", "check_request",
           "gpu_environment", "load_options", "outputs", "parse_request"]
