"""One error type for the whole server, carrying the gRPC code TF Serving would return.

Every layer (path checks, model lookup, tensor conversion, signature execution) raises
`ServingError`; the gRPC and REST front ends turn it into a status code and a message.
Anything else that escapes is a server bug and becomes INTERNAL.

    raise ServingError.invalid_argument("input 'images' expects uint8, got float32; send uint8 pixels")
    raise ServingError.not_found(f"model '{clip(name)}' is not served")  # echo client input clipped

Messages are capped at MAX_MESSAGE_CHARS: they travel in gRPC trailing metadata, and an
echoed 10 KB name would otherwise turn the answer into "metadata size exceeds limit".
"""
from __future__ import annotations

import grpc
from tensorflow_serving.apis import status_pb2

# gRPC code -> HTTP status, as TF Serving's REST front end maps them.
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

MAX_ECHO_CHARS = 64  # how much of a client-sent string an error message repeats
MAX_MESSAGE_CHARS = 1024


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`text` cut to `limit` characters, marked with '...' and its full length if cut.

    >>> clip("x" * 100, 8)
    'xxxxxxxx...(100 chars)'
    """
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


# grpc.StatusCode.value is (int code, "name"); tensorflow.error.Code uses the same ints.
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A request or load failed with a specific gRPC status code.

    Args:
        code: a `grpc.StatusCode`.
        message: what went wrong and how to fix it.

    Example:

    >>> err = ServingError.not_found("model 'digits' is not served; loaded models: mnist")
    >>> err.code.name, err.http_status
    ('NOT_FOUND', 404)
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        message = clip(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)

    def to_status_proto(self) -> status_pb2.StatusProto:
        """TF Serving's StatusProto (error_code uses tensorflow.error.Code numbers)."""
        return status_pb2.StatusProto(error_code=self.code.value[0], error_message=self.message)

    @classmethod
    def invalid_argument(cls, message: str) -> "ServingError":
        return cls(grpc.StatusCode.INVALID_ARGUMENT, message)

    @classmethod
    def not_found(cls, message: str) -> "ServingError":
        return cls(grpc.StatusCode.NOT_FOUND, message)

    @classmethod
    def unimplemented(cls, message: str) -> "ServingError":
        return cls(grpc.StatusCode.UNIMPLEMENTED, message)

    @classmethod
    def unavailable(cls, message: str) -> "ServingError":
        return cls(grpc.StatusCode.UNAVAILABLE, message)

    @classmethod
    def resource_exhausted(cls, message: str) -> "ServingError":
        return cls(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    @classmethod
    def from_tf_error(cls, error) -> "ServingError":
        """A `tf.errors.OpError` raised while running a signature (e.g. undecodable PNG)."""
        code = _BY_NUMBER.get(getattr(error, "error_code", 2), grpc.StatusCode.UNKNOWN)
        message = getattr(error, "message", None) or str(error)
        lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
        if len(lines) > 1 and lines[0].endswith("execution error:"):
            # Eager "Graph execution error:" + a call stack: the kernel's own message is the last line(s).
            lines = [line for line in lines if not line.startswith("[[")][-1:] or lines
        return cls(code, lines[0] if lines else type(error).__name__)


def ok_status_proto() -> status_pb2.StatusProto:
    return status_pb2.StatusProto(error_code=0)
