"""Training on CPU: ``data`` (tasks reverse/copy/sort/g2p), ``metrics`` (exact match, token and
word error rates, torch-free), ``trainer`` (``train``, ``evaluate``, batched greedy decoding).

Import the submodules directly (``from s2s_export.train.trainer import train``): this package
imports nothing, so ``s2s_export.train.metrics`` stays usable without torch."""
