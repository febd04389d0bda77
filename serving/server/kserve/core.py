"""The Open Inference Protocol's model operations on the ModelManager (front-end neutral).

Both front ends (REST `rest_routes.py`, gRPC `grpc_service.py`) parse their wire format
into `RequestInput`s and call `infer`; lookups go through `ModelManager.resolve` (same
versions, labels and errors as TF Serving's API) and execution through `Signature.run`
(same checks, same dynamic batcher: v2 and TF Serving requests share batches).

Each model is seen through ONE signature, like Triton's TensorFlow backend (its
`TF_SIGNATURE_DEF` model parameter, default `serving_default`): `KServeOptions` picks it
per model (server flag), and a request may name another with the `signature_name`
request parameter.

    result = infer(manager, options, InferCall("digits", "", {}, inputs, outputs=None))
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Mapping

import numpy as np
from tensorflow_serving.apis import model_pb2

from serving.server.errors import ServingError
from serving.server.kserve import convert
from serving.server.servable import DEFAULT_SIGNATURE, LoadedVersion
from serving.server.signature import Signature

PLATFORM = "tensorflow_savedmodel"  # what Triton reports for a TF SavedModel
SIGNATURE_PARAMETER = "signature_name"
SERVER_NAME = "embedded-model-server"
SERVER_VERSION = "1"
EXTENSIONS = ("binary_tensor_data",)
_VERSION = re.compile(r"^[0-9]{1,18}$")
_SIGNATURE_NAME = re.compile(r"^[A-Za-z0-9_./-]{1,128}$")


@dataclasses.dataclass(frozen=True)
class KServeOptions:
    """Which signature the v2 protocol exposes for each model.

    Args:
        signature_name: the signature for models not named in `model_signatures`.
        model_signatures: model name -> signature, e.g. {"digits": "serving_images"}.

    Example:

    >>> KServeOptions.parse("serving_images,text=serving_text").signature_for("text")
    'serving_text'
    """

    signature_name: str = DEFAULT_SIGNATURE
    model_signatures: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def signature_for(self, model: str) -> str:
        return self.model_signatures.get(model, self.signature_name)

    @classmethod
    def parse(cls, text: str) -> "KServeOptions":
        """`SIG`, `MODEL=SIG,...` or both (the `--kserve_signature_def` flag's value)."""
        default, per_model = DEFAULT_SIGNATURE, {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            model, _, signature = item.rpartition("=")
            if not _SIGNATURE_NAME.match(signature) or (model and not _SIGNATURE_NAME.match(model)):
                raise ValueError(f"--kserve_signature_def item {item!r} is invalid; use SIGNATURE or MODEL=SIGNATURE, comma-separated")
            if model:
                per_model[model] = signature
            else:
                default = signature
        return cls(default, per_model)


@dataclasses.dataclass
class RequestInput:
    """One input tensor of a request: its header, and how to decode its data once checked."""

    name: str
    datatype: str
    shape: list
    decode: Callable[[], np.ndarray]


@dataclasses.dataclass
class InferCall:
    model_name: str
    model_version: str
    parameters: Mapping
    inputs: list
    outputs: list | None  # requested output names, None = all


@dataclasses.dataclass
class InferResult:
    version: LoadedVersion
    signature: Signature
    outputs: list  # [(name, numpy array)]


def model_spec(model_name: str, model_version: str) -> model_pb2.ModelSpec:
    """The ModelSpec a v2 model name + version string stand for ("" = latest available)."""
    spec = model_pb2.ModelSpec(name=model_name)
    if model_version not in ("", "-1"):
        if not isinstance(model_version, str) or not _VERSION.match(model_version):
            raise ServingError.invalid_argument(
                f"model version {model_version!r} of model '{model_name}' is not a version number; "
                "use a positive integer, or leave it out for the latest version"
            )
        spec.version.value = int(model_version)
    return spec


def resolve(manager, model_name: str, model_version: str) -> LoadedVersion:
    return manager.resolve(model_spec(model_name, model_version))


def signature_of(version: LoadedVersion, options: KServeOptions, parameters: Mapping) -> Signature:
    requested = parameters.get(SIGNATURE_PARAMETER)
    if requested is not None and not isinstance(requested, str):
        raise ServingError.invalid_argument(f"request parameter '{SIGNATURE_PARAMETER}' must be a string")
    return version.signature(requested or options.signature_for(version.name))


def server_ready(manager) -> bool:
    """Ready = at least one version of every configured model loaded and warmed up."""
    available = manager.available_versions()
    return bool(available) and all(available.values())


def not_ready_models(manager) -> list:
    return sorted(name for name, versions in manager.available_versions().items() if not versions)


def model_ready(manager, model_name: str, model_version: str) -> bool:
    """Whether that version (or any version) of the model can answer now."""
    spec = model_spec(model_name, model_version)
    versions = manager.available_versions().get(model_name) or []
    if spec.HasField("version"):
        return spec.version.value in versions
    return bool(versions)


def server_metadata() -> dict:
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}


def _tensor_metadata(spec) -> dict:
    shape = [-1] if spec.shape is None else [-1 if d is None else d for d in spec.shape]
    return {"name": spec.name, "datatype": convert.datatype_of(spec.dtype), "shape": shape}


def model_metadata(manager, options: KServeOptions, model_name: str, model_version: str) -> dict:
    """Name, available versions, platform, and the exposed signature's inputs/outputs."""
    version = resolve(manager, model_name, model_version)
    signature = signature_of(version, options, {})
    return {
        "name": version.name,
        "versions": [str(v) for v in manager.available_versions().get(version.name, [])],
        "platform": PLATFORM,
        "inputs": [_tensor_metadata(signature.inputs[k]) for k in sorted(signature.inputs)],
        "outputs": [_tensor_metadata(signature.outputs[k]) for k in sorted(signature.outputs)],
    }


def _arrays(signature: Signature, model: str, inputs: list) -> dict:
    where = f"model '{model}' (signature '{signature.name}')"
    names = [tensor.name for tensor in inputs]
    if len(set(names)) != len(names):
        raise ServingError.invalid_argument(f"an input is given twice ({names}); send each input of {where} once")
    for tensor in inputs:
        spec = signature.inputs.get(tensor.name)
        if spec is None:
            raise ServingError.invalid_argument(
                f"unexpected inference input '{tensor.name}' for {where}; its inputs are {sorted(signature.inputs)}"
            )
        expected = convert.datatype_of(spec.dtype)
        if tensor.datatype != expected:
            raise ServingError.invalid_argument(
                f"inference input '{tensor.name}' data-type is '{tensor.datatype}', but {where} expects '{expected}'"
            )
    missing = sorted(set(signature.inputs) - set(names))
    if missing:
        raise ServingError.invalid_argument(f"{where} needs input(s) {missing}; send all of {sorted(signature.inputs)}")
    return signature.check_arrays({tensor.name: tensor.decode() for tensor in inputs})


# Triton's wording ("unexpected inference output") for Signature.select_outputs.
UNKNOWN_OUTPUT = "unexpected inference output '{name}' for model '{model}' (signature '{signature}'); its outputs are {outputs}"
REPEATED_OUTPUT = "outputs {names} repeat an output; request each once"


def infer(manager, options: KServeOptions, call: InferCall) -> InferResult:
    """Runs one inference request on the version it names, through the signature's batcher."""
    version = resolve(manager, call.model_name, call.model_version)
    signature = signature_of(version, options, call.parameters)
    arrays = _arrays(signature, version.name, call.inputs)
    wanted = signature.select_outputs(call.outputs, UNKNOWN_OUTPUT, REPEATED_OUTPUT, model=version.name)
    outputs = signature.run(arrays)
    return InferResult(version, signature, [(name, outputs[name]) for name in wanted])
