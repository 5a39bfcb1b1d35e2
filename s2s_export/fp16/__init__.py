"""Mixed-precision FP16 graphs for TensorRT (strongly typed: precision lives in the graph).

* ``policy``: the rule set that keeps float32 islands (softmax, masks, top-k, reductions,
  recurrent accumulators, ...), measured and documented;
* ``convert``: ``to_fp16(onnx_in, onnx_out, policy) -> FP16Report`` (float32 graph IO kept),
  plus the float16 overflow scan of constants;
* ``fidelity``: FP16 vs FP32 decoding with real float16 arithmetic on the CPU
  (``step_fidelity``, ``bundle_fidelity`` for ``s2s verify``);
* ``testing``: tiny trained models and bundles for the tests.

Nothing here is imported by the runtime; onnx is imported inside the functions that need it.
"""
