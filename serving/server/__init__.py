"""The embedded TF Serving-compatible model server (see docs/serving-server.md).

    from serving.server import ModelServer, ServerOptions
    with ModelServer(ServerOptions(model_name="digits", model_base_path="runs/serving/digits", port=0)) as server:
        ...
"""
from serving.server.options import ServerOptions

__all__ = ["ModelServer", "ServerOptions"]


def __getattr__(name):
    # ModelServer imports TensorFlow; load it only when asked for.
    if name == "ModelServer":
        from serving.server.server import ModelServer

        return ModelServer
    raise AttributeError(name)
