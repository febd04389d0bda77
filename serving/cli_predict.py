"""`python -m serving predict`: classify images, texts (or tf.Examples) with a running server.

    python -m serving predict --model digits --image a.png b.png --top_k 3
    python -m serving predict --model reviews --text "not bad at all" "a dull, boring plot"
    python -m serving predict --model digits --image a.png --rest http://127.0.0.1:8501
    python -m serving predict --model digits --examples test.tfrecord --server 127.0.0.1:8500

Images are converted to the model's channels and resized to its input size, both learnt
from the serving_images signature (GetModelMetadata). Output, one line per input:

    a.png: 3 0.9120 | 8 0.0510 | 5 0.0200
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def load_image(path: str, shape: tuple) -> np.ndarray:
    """uint8 [H, W, C] for a model input of `shape` = (H, W, C)."""
    from PIL import Image

    height, width, channels = shape
    if channels not in _MODES:
        raise ValueError(f"the model wants {channels} channels; only 1, 3 or 4 can be made from an image file")
    with Image.open(path) as image:
        image = image.convert(_MODES[channels])
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    return array.reshape(height, width, channels)


def read_examples(path: str, limit: int) -> list:
    import tensorflow as tf

    return [record.numpy() for record in tf.data.TFRecordDataset(path).take(limit)]


def format_top_k(name: str, pairs) -> str:
    return f"{name}: " + " | ".join(f"{label} {probability:.4f}" for label, probability in pairs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving predict", description="Classify images or texts with a model server.")
    parser.add_argument("--model", required=True, help="model name on the server")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", nargs="+", help="image files (PNG, JPEG, ...)")
    source.add_argument("--text", nargs="+", help="texts, for text models (the serving_text signature)")
    source.add_argument("--examples", help="TFRecord file of serialized tf.Examples (feature 'image' = PNG, or 'text')")
    parser.add_argument("--max_examples", type=int, default=100, help="read at most this many examples")
    parser.add_argument("--top_k", type=int, default=3)
    parser.add_argument("--server", default="127.0.0.1:8500", help="gRPC host:port")
    parser.add_argument("--rest", help="use the REST API at this URL instead of gRPC, e.g. http://127.0.0.1:8501")
    parser.add_argument("--version", type=int, help="model version (default: latest)")
    parser.add_argument("--label", help="version label, e.g. stable or canary")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request, retries included")
    parser.add_argument("--tls", nargs="?", const=True, default=False, metavar="CA_PEM",
                        help="use TLS; optionally the CA certificate to trust")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.top_k < 1:
        print("error: --top_k must be >= 1", file=sys.stderr)
        return 2
    from serving.client import RestClient, ServingClient

    import grpc

    if args.rest:
        client = RestClient(args.rest, timeout=args.timeout, cafile=args.tls if isinstance(args.tls, str) else None)
    else:
        client = ServingClient(args.server, timeout=args.timeout, tls=args.tls)
    where = {"version": args.version, "label": args.label}
    try:
        if args.image:
            shape = client.image_shape(args.model, **where)
            images = np.stack([load_image(path, shape) for path in args.image])
            prediction = client.predict_images(args.model, images, **where)
            names = args.image
        elif args.text:
            prediction = client.predict_text(args.model, args.text, **where)
            names = [repr(t) if len(t) <= 40 else repr(t[:37] + "...") for t in args.text]
        else:
            examples = read_examples(args.examples, args.max_examples)
            if not examples:
                print(f"error: {args.examples} holds no records", file=sys.stderr)
                return 2
            prediction = client.predict_examples(args.model, examples, **where)
            names = [f"{args.examples}[{i}]" for i in range(len(examples))]
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except (RuntimeError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for name, pairs in zip(names, prediction.top_k(args.top_k)):
        print(format_top_k(name, pairs))
    return 0
