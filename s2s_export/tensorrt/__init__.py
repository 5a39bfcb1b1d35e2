"""TensorRT: the compatibility check (any machine) and the engine builder (target device).

* ``compat``: ``check_trt_compat(model_or_path) -> list[Problem]`` against the ONNX-TensorRT
  parser's operator matrix and restrictions;
* ``builder``: ``build_engines(bundle_dir, ...)`` (``s2s build-engines``), ``fp16_hook`` /
  ``add_tensorrt`` (``s2s-export --trt``), and the environment probes (TensorRT, CUDA GPU).

tensorrt and cuda-python are imported inside functions only; the runtime backend lives in
``s2s_export.runtime.backends.tensorrt``.
"""
