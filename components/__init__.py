"""TFX components, one folder per step of the data flow."""


def __getattr__(name):
    # Kubeflow's launcher resolves custom artifact types from their TYPE_NAME,
    # "components.HeldOutReport"; import lazily so `import components` stays light.
    if name == "HeldOutReport":
        from components.evaluate.heldout.component import HeldOutReport

        return HeldOutReport
    raise AttributeError(name)
