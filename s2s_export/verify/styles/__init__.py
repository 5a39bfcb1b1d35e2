"""Torch references of the search styles that reproduce another tool's decoder (``opennmt.py``,
``joeynmt.py``): written apart from ``runtime/styles`` (one sentence at a time, torch tensors, the
tool's own data layout), so that a bug in one cannot hide in both. Each module exposes
``reference_search(model, src_ids, ...)`` (called by ``verify.reference.reference_search`` with
``style=NAME``)."""
