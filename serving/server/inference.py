"""Classify, Regress and MultiInference: tf.Example in, TF Serving's result protos out.

As in TF Serving, the signature (default `serving_default`) must take one string input
`inputs` of serialized tf.Examples and return `classes`/`scores` (classify) or `outputs`
(regress); its method name (`tensorflow/serving/classify` or `.../regress`) is checked only
with --enable_signature_method_name_check, TF Serving's default being off. Examples with a context get the context's features merged in.
The number of examples and their bytes with the context merged in are checked against
the version's `RequestLimits` before the merged examples are built.

    response = classify(version, request)   # request.model_spec.signature_name = "classification"
"""
from __future__ import annotations

import numpy as np
from tensorflow_serving.apis import classification_pb2, inference_pb2, regression_pb2

from serving.contract import CLASSIFY_METHOD, EXAMPLES_SIGNATURE, REGRESS_METHOD
from serving.server.errors import ServingError, clip
from serving.server.servable import LoadedVersion
from serving.server.signature import RequestLimits

INPUTS_KEY = "inputs"


def serialized_examples(input_proto, limits: RequestLimits = RequestLimits()) -> np.ndarray:
    """Serialized tf.Examples of an `Input` (ExampleList or ExampleListWithContext)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        listed, context = input_proto.example_list, b""
    elif kind == "example_list_with_context":
        listed = input_proto.example_list_with_context
        # Concatenated serializations merge: the example's features override the context's.
        context = listed.context.SerializeToString()
    else:
        raise ServingError.invalid_argument("the request input is empty; set input.example_list.examples")
    limits.check_rows(len(listed.examples), "the request input")
    sizes = [example.ByteSize() for example in listed.examples]
    limits.check_bytes(sum(sizes) + len(context) * len(sizes), "the request input (each example with the context)")
    examples = [context + example.SerializeToString() for example in listed.examples]
    if not examples:
        raise ServingError.invalid_argument("the request input has no examples; send at least one tf.Example")
    return np.array(examples, dtype=object)


def _checked_signature(version: LoadedVersion, signature_name: str, method: str):
    """The signature, checked as TF Serving's classifier.cc / regressor.cc do (same texts, plus a fix).

    The method_name is only checked with --enable_signature_method_name_check (TF Serving's
    default is off: `tf.saved_model.save` writes the predict method name on every signature).
    """
    signature = version.signature(signature_name)
    kind = "classification" if method == CLASSIFY_METHOD else "regression"
    fix = f"name a {kind} signature ({method}) in model_spec.signature_name"
    if version.method_name_check and signature.method_name != method:
        raise ServingError.invalid_argument(
            f"Expected {kind} signature method_name to be {method}. Was: {clip(signature.method_name)} "
            f"(signature '{signature.name}'; the server runs with --enable_signature_method_name_check); {fix}"
        )
    if len(signature.inputs) != 1:
        raise ServingError.invalid_argument(
            f"Expected one input Tensor. Signature '{signature.name}' has {sorted(signature.inputs)}; {fix}")
    if INPUTS_KEY not in signature.inputs:
        raise ServingError.invalid_argument(
            f"No {kind} inputs found in SignatureDef '{signature.name}' (method_name {clip(signature.method_name)}): "
            f"it needs one input named '{INPUTS_KEY}' taking serialized tf.Examples, has {sorted(signature.inputs)}; {fix}"
        )
    return signature


def _run_examples(signature, examples: np.ndarray) -> dict:
    return signature.run(signature.check_arrays({INPUTS_KEY: examples}))


def classification_result(version: LoadedVersion, signature_name: str, examples: np.ndarray):
    signature = _checked_signature(version, signature_name, CLASSIFY_METHOD)
    if "classes" not in signature.outputs and "scores" not in signature.outputs:
        raise ServingError.invalid_argument(
            f"Expected classification signature outputs to contain at least one of \"classes\" or \"scores\". "
            f"Signature '{signature.name}' has {sorted(signature.outputs)}; name a classification signature "
            f"({CLASSIFY_METHOD}) in model_spec.signature_name")
    outputs = _run_examples(signature, examples)
    scores, classes = outputs.get("scores"), outputs.get("classes")
    reference = scores if scores is not None else classes
    if reference.ndim != 2:
        raise ServingError.invalid_argument(f"classification outputs must be [batch, classes], got shape {list(reference.shape)}")
    result = classification_pb2.ClassificationResult()
    for row in range(reference.shape[0]):
        classifications = result.classifications.add()
        for column in range(reference.shape[1]):
            entry = classifications.classes.add()
            if classes is not None:
                label = classes[row, column]
                entry.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            if scores is not None:
                entry.score = float(scores[row, column])
    return signature.name, result


def regression_result(version: LoadedVersion, signature_name: str, examples: np.ndarray):
    signature = _checked_signature(version, signature_name, REGRESS_METHOD)
    if "outputs" not in signature.outputs:
        raise ServingError.invalid_argument(
            f"No regression outputs found in SignatureDef '{signature.name}': it needs an output named 'outputs', "
            f"has {sorted(signature.outputs)}; name a regression signature ({REGRESS_METHOD}) in model_spec.signature_name")
    values = np.asarray(_run_examples(signature, examples)["outputs"], dtype=np.float32)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ServingError.invalid_argument(f"regression output must be [batch] or [batch, 1], got {list(values.shape)}")
    result = regression_pb2.RegressionResult()
    for value in values.tolist():
        result.regressions.add(value=value)
    return signature.name, result


def classify(version: LoadedVersion, request) -> classification_pb2.ClassificationResponse:
    name, result = classification_result(version, request.model_spec.signature_name, serialized_examples(request.input, version.limits))
    response = classification_pb2.ClassificationResponse(result=result)
    version.fill_model_spec(response.model_spec, name)
    return response


def regress(version: LoadedVersion, request) -> regression_pb2.RegressionResponse:
    name, result = regression_result(version, request.model_spec.signature_name, serialized_examples(request.input, version.limits))
    response = regression_pb2.RegressionResponse(result=result)
    version.fill_model_spec(response.model_spec, name)
    return response


def multi_inference(version: LoadedVersion, request) -> inference_pb2.MultiInferenceResponse:
    """All tasks run on `version` (the caller checked that they name one model and version)."""
    if not request.tasks:
        raise ServingError.invalid_argument("MultiInference needs at least one task")
    names = [task.model_spec.signature_name or EXAMPLES_SIGNATURE for task in request.tasks]
    if len(set(names)) != len(names):
        raise ServingError.invalid_argument(f"MultiInference tasks repeat a signature ({clip(names)}); use each once")
    examples = serialized_examples(request.input, version.limits)
    response = inference_pb2.MultiInferenceResponse()
    for task in request.tasks:
        result = response.results.add()
        if task.method_name == CLASSIFY_METHOD:
            name, classification = classification_result(version, task.model_spec.signature_name, examples)
            result.classification_result.CopyFrom(classification)
        elif task.method_name == REGRESS_METHOD:
            name, regression = regression_result(version, task.model_spec.signature_name, examples)
            result.regression_result.CopyFrom(regression)
        else:
            raise ServingError.unimplemented(
                f"MultiInference method_name {clip(task.method_name)!r} is not supported; use {CLASSIFY_METHOD} or {REGRESS_METHOD}"
            )
        version.fill_model_spec(result.model_spec, name)
    return response
