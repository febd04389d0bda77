"""The one pattern for a pipeline config section: a frozen dataclass that owns its keys, types,
defaults, allowed values and range checks.

pipeline/config.py builds its SCHEMA from each section's `schema()` (its `_check` checks types
and allowed values) and then runs the section's `from_dict` (the range checks), so a default or
a rule is written once. Import-free apart from the standard library.

    @dataclasses.dataclass(frozen=True)
    class PushConfig(ConfigSection):
        SECTION = "push"
        model_name: str = field("digits", (str,))

        def check(self):
            if not self.model_name:
                raise self.fail("model_name", self.model_name, "expected a name")

    PushConfig.schema()           # {"model_name": ((str,), "digits", None)}: pipeline/config.py's SCHEMA form
    PushConfig.from_dict({"model_name": ""})   # SectionError: push key 'model_name' has bad value '': expected a name
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

NUMBER = (float, int)


def field(default, types, allowed=None, internal=False, **kwargs):
    """A section field: its default and the types / allowed values the config may give.

    A ConfigSection class as `default` makes a nested section (e.g. `data.text`), filled with its defaults.
    `internal`: set by the pipeline build, not a key users write (left out of `schema()`).
    """
    if isinstance(default, type) and issubclass(default, ConfigSection):
        return dataclasses.field(default_factory=default, metadata={"section": default}, **kwargs)
    metadata = {"types": types, "allowed": allowed, "internal": internal}
    if isinstance(default, (dict, list)):
        factory = type(default)
        return dataclasses.field(default_factory=lambda: factory(default), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


class SectionError(ValueError):
    """A bad value in a config section: `key` (its path inside the section), `value`, `want` (what is allowed).

    `missing`: the key is absent but needed; `want` then says why.
    """

    def __init__(self, section: str, key: str, value: Any, want: str, missing: bool = False):
        self.section, self.key, self.value, self.want, self.missing = section, key, value, want, missing
        if missing:
            super().__init__(f"missing {section} key '{key}': {want}")
        else:
            super().__init__(f"{section} key '{key}' has bad value {value!r}: {want}")

    def config_message(self) -> str:
        """The error as a pipeline config user sees it, with the full key path."""
        where = f"{self.section}.{self.key}"
        if self.missing:
            return f"missing config key '{where}': {self.want}"
        return f"config key '{where}' has bad value {self.value!r}: {self.want}"


class ConfigSection:
    """Base of a section dataclass: `schema()` for pipeline/config.py, `from_dict()` runs `check()`."""

    SECTION: ClassVar[str] = ""  # its key in the pipeline config, e.g. "data"
    ERROR: ClassVar[type] = SectionError  # what `fail` raises; a section may name a subclass

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """{key: (types, default, allowed-values-or-None)}, a nested dict for a nested section."""
        defaults = cls()
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if "section" in f.metadata:
                out[f.name] = f.metadata["section"].schema()
            elif not f.metadata.get("internal"):
                out[f.name] = (f.metadata["types"], getattr(defaults, f.name), f.metadata["allowed"])
        return out

    @classmethod
    def from_dict(cls, section: dict):
        """Range checks on a type-checked section (pipeline/config.py's `_check` checks types and allowed values)."""
        values = dict(section)
        for f in dataclasses.fields(cls):
            if "section" in f.metadata and isinstance(values.get(f.name), dict):
                try:
                    values[f.name] = f.metadata["section"].from_dict(values[f.name])
                except SectionError as e:
                    raise cls.ERROR(cls.SECTION, f"{f.name}.{e.key}", e.value, e.want, e.missing) from None
        config = cls(**values)
        config.check()
        return config

    def check(self) -> None:
        """Range and cross-key checks; raise SectionError. Types and allowed values are already checked."""

    def fail(self, key: str, value: Any, want: str, missing: bool = False) -> SectionError:
        return self.ERROR(self.SECTION, key, value, want, missing)
