"""Serving on Triton Inference Server: the model repository writer (``repository.py``), the
Python-backend model it writes (``model.py`` over ``handler.py``) and the server launcher
(``server.py``). Torch-free; Triton itself comes from the ``serve`` extra (nvidia-pytriton)."""
