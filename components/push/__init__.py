"""The Pusher: component.py (AtomicPusher), executor.py (the push gate), publish.py (the atomic,
idempotent push), keys.py (its artifact property keys), config.py (the `push:` section).

`AtomicPusher` (and the TFX stack) is imported lazily, so reading the `push:` schema or the keys
does not load TFX.
"""
__all__ = ["AtomicPusher"]


def __getattr__(name):
    if name == "AtomicPusher":
        from components.push.component import AtomicPusher

        return AtomicPusher
    raise AttributeError(f"module 'components.push' has no attribute {name!r}")
