"""Torch references of the search styles that reproduce another tool's decoder (``runtime/styles/``),
written independently of the runtime's: ``joeynmt.py`` (Joey NMT 2.3). ``verify.reference``'s
``reference_search(style=...)`` dispatches here."""
