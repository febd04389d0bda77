"""TF Serving config protos that `tensorflow-serving-api` does not ship.

The PyPI package `tensorflow-serving-api` has `ModelServerConfig`
(`tensorflow_serving.config.model_server_config_pb2`) but neither
`BatchingParameters` (the `--batching_parameters_file` format) nor `MonitoringConfig`
(the `--monitoring_config_file` format). When the real generated modules are importable
they are used; otherwise this module describes the same messages (same package, message,
field names, numbers and types, so text and wire formats match the model server's) in a
private descriptor pool.

Only the fields this project writes are described: a text file that sets another
upstream field (e.g. `enable_large_batch_splitting`) will not parse with the fallback,
though the model server accepts it.

    from serving.tfs_protos import BatchingParameters, MonitoringConfig
    params = BatchingParameters()
    params.max_batch_size.value = 32
"""
from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_PACKAGE = "tensorflow.serving"
_F = descriptor_pb2.FieldDescriptorProto

# (field name, number, type, label, message type) as in TF Serving's
# session_bundle_config.proto and monitoring_config.proto.
_BATCHING_FIELDS = (
    ("max_batch_size", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
    ("batch_timeout_micros", 2, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
    ("max_enqueued_batches", 3, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
    ("num_batch_threads", 4, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.Int64Value"),
    ("thread_pool_name", 5, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, ".google.protobuf.StringValue"),
    ("allowed_batch_sizes", 6, _F.TYPE_INT64, _F.LABEL_REPEATED, None),
    ("pad_variable_length_inputs", 7, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, None),
)
_PROMETHEUS_FIELDS = (
    ("enable", 1, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, None),
    ("path", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, None),
)
_MONITORING_FIELDS = (
    ("prometheus_config", 1, _F.TYPE_MESSAGE, _F.LABEL_OPTIONAL, f".{_PACKAGE}.PrometheusConfig"),
)


def _add_message(file_proto, name, fields):
    message = file_proto.message_type.add(name=name)
    for field_name, number, field_type, label, type_name in fields:
        field = message.field.add(name=field_name, number=number, type=field_type, label=label)
        if type_name:
            field.type_name = type_name


def _build_fallback_classes():
    """Message classes for BatchingParameters/MonitoringConfig from a private pool."""
    # A private pool: no clash if the real generated modules get imported later.
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="serving/tfs_protos_subset.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=[wrappers.name],
    )
    _add_message(file_proto, "BatchingParameters", _BATCHING_FIELDS)
    _add_message(file_proto, "PrometheusConfig", _PROMETHEUS_FIELDS)
    _add_message(file_proto, "MonitoringConfig", _MONITORING_FIELDS)
    pool.Add(file_proto)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in ("BatchingParameters", "MonitoringConfig")
    )


try:  # the real generated modules, if some build of tensorflow-serving-api ships them
    from tensorflow_serving.config.monitoring_config_pb2 import MonitoringConfig
    from tensorflow_serving.servables.tensorflow.session_bundle_config_pb2 import BatchingParameters

    USING_FALLBACK = False
except ImportError:
    BatchingParameters, MonitoringConfig = _build_fallback_classes()
    USING_FALLBACK = True

__all__ = ["BatchingParameters", "MonitoringConfig", "USING_FALLBACK"]
