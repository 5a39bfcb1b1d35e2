"""The torch-free runtime: ``Translator`` (text in, text out), the search (greedy, beam) and
the backends it runs over. Importing it never imports torch or onnx (only numpy; the backend's
engine is imported when a Translator is loaded)."""

from .backends.base import Backend, StepResult
from .search import Result, SearchOptions, beam_search, greedy_search, search
from .translator import BACKENDS, Hypothesis, Translator

__all__ = ["BACKENDS", "Backend", "Hypothesis", "Result", "SearchOptions", "StepResult", "Translator",
           "beam_search", "greedy_search", "search"]
