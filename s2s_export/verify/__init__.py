"""Parity verification of a bundle against its PyTorch model (``s2s verify``).

* ``reference``   the PyTorch reference search (greedy, beam), written apart from the runtime's;
* ``compare``     the comparison math (max abs, max rel with its floor, p99, tolerance test),
                  shared with the exporter's on-the-spot check (``export/parity.py``);
* ``tolerances``  per-output tolerances with defaults per precision (fp32, fp16, int8);
* ``stepwise``    the teacher-forced per-step check through the runtime ``Backend`` protocol;
* ``freerun``     greedy/beam outputs of both, divergences with their margins, near ties,
                  quality (BLEU, or PER/WER for g2p);
* ``bleu``        corpus BLEU-4;
* ``inputs``      the sentences (data file, task test split, random);
* ``api``         ``verify_bundle`` -> ``VerifyResult`` (the JSON-able report);
* ``report``      terminal summary, JSON, self-contained HTML.

Importing this package does not import torch (``verify_bundle`` imports it when it runs).
"""

from .api import VerifyResult, check_model, verify_bundle
from .tolerances import Tolerances, defaults

__all__ = ["Tolerances", "VerifyResult", "check_model", "defaults", "verify_bundle"]
