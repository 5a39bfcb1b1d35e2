"""Triton Inference Server Python-backend model serving an s2s-export bundle.

Written by ``s2s triton-repo`` into ``REPO/NAME/1/model.py``, beside the bundle (``1/bundle/``).
Runs in the Python backend's stub process (one per model instance), which must be able to import
``s2s_export`` and its runtime (``pip install 's2s-export[cpu]'`` or ``[gpu]`` in the server's
Python; ``s2s serve`` sets PYTHONPATH to the running installation). Each instance loads one
``Translator``; ``execute`` answers a batch of requests (``s2s_export.serving.handler``: inputs
``text`` [N,1] BYTES, optional ``beam_size`` / ``n_best`` [N,1] INT32; outputs ``translation``,
``score``, ``translations``, ``scores``). Options of ``Translator.load`` come from the config's
``parameters`` (backend, precision, intra_op_threads, spinning).
"""

from __future__ import annotations

import json
import os
import site
import sys
from typing import Any

import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend

# The stub's embedded interpreter ignores PYTHONPATH (it runs isolated): ``s2s serve`` passes
# its own sys.path in S2S_SERVE_SYS_PATH so that this process imports what it imports.
for _entry in reversed([p for p in os.environ.get("S2S_SERVE_SYS_PATH", "").split(os.pathsep) if p]):
    if _entry not in sys.path:
        sys.path.insert(0, _entry)
        if _entry.endswith(("site-packages", "dist-packages")):
            site.addsitedir(_entry)  # its .pth files (editable installs)

from s2s_export.runtime import Translator  # noqa: E402
from s2s_export.serving import handler  # noqa: E402


class TritonPythonModel:
    """One model instance: a Translator over ``<version dir>/bundle``."""

    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        handler.gpu_environment(args.get("model_instance_kind", "CPU"), args.get("model_instance_device_id"))
        bundle = os.path.join(args["model_repository"], args["model_version"], "bundle")
        self.translator = Translator.load(bundle, **handler.load_options(parameters))

    def execute(self, requests: list[Any]) -> list[Any]:
        arrays = []
        for request in requests:
            item = {}
            for name in handler.INPUTS:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                item[name] = None if tensor is None else tensor.as_numpy()
            arrays.append(item)
        responses = []
        for result in handler.answer(self.translator, arrays):
            if isinstance(result, Exception):
                code = (pb_utils.TritonError.INVALID_ARG if isinstance(result, handler.RequestError)
                        else pb_utils.TritonError.INTERNAL)
                responses.append(pb_utils.InferenceResponse(output_tensors=[],
                                                            error=pb_utils.TritonError(str(result), code)))
            else:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, array) for name, array in result.items()]))
        return responses

    def finalize(self) -> None:
        del self.translator
