from components.push.component import AtomicPusher  # noqa: F401
