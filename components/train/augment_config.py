"""The `train.augmentation:` config section: one frozen dataclass per op owns its parameters'
defaults and ranges, and the section parser names `train.augmentation.<op>.<key>`, the bad
value and what is allowed. Import-free apart from the standard library (no TensorFlow), so the
pipeline validates a config without loading TF; components/train/augment.py applies the ops.

    Rotation.from_config({"degrees": 10}).params()     # {"p": 1.0, "degrees": 10.0}
    Rotation.from_config({"degrees": 270})             # ValueError: train.augmentation.rotation.degrees = 270 is out of range ...
    parse_augmentation({"mixup": {}, "fill_mode": "reflect"})   # ({"mixup": {"p": 1.0, "alpha": 0.2}}, "reflect")
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, ClassVar, Mapping

CONFIG_KEY = "train.augmentation"  # where the section sits in the pipeline config
FILL_MODES = ("min", "nearest", "reflect")  # "min": outside pixels get the image's minimum (its background)
POLICY_OPTIONS = ("enabled", "fill_mode")


@dataclasses.dataclass(frozen=True)
class _Number:
    """A float (or int if `integer`) parameter in [lo, hi] (lo excluded if `lo_open`)."""

    lo: float
    hi: float
    lo_open: bool = False
    integer: bool = False

    def allowed(self) -> str:
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {'(' if self.lo_open else '['}{self.lo}, {self.hi}]"

    def check(self, value: Any, where: str) -> float:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or (self.integer and value != int(value)):
            raise ValueError(f"{where} must be {self.allowed()}, got {value!r}.")
        too_low = value <= self.lo if self.lo_open else value < self.lo
        if too_low or value > self.hi or math.isnan(value):
            raise ValueError(f"{where} = {value!r} is out of range: it must be {self.allowed()}.")
        return int(value) if self.integer else float(value)


@dataclasses.dataclass(frozen=True)
class _Range:
    """A [low, high] pair with low <= high, both allowed by `bound`."""

    bound: _Number

    def check(self, value: Any, where: str) -> tuple:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(f"{where} must be a [low, high] pair of numbers, each {self.bound.allowed()}; got {value!r}.")
        low, high = (self.bound.check(v, where) for v in value)
        if low > high:
            raise ValueError(f"{where} = {list(value)!r}: low must be <= high.")
        return (low, high)


def _number(default: float, lo: float, hi: float, *, lo_open: bool = False, integer: bool = False):
    """An op parameter: its default and the range a config may give."""
    return dataclasses.field(default=default, metadata={"spec": _Number(lo, hi, lo_open, integer)})


def _pair(default: tuple, lo: float, hi: float, *, lo_open: bool = False):
    """A [low, high] op parameter: its default and the range each end may take."""
    return dataclasses.field(default=default, metadata={"spec": _Range(_Number(lo, hi, lo_open))})


def _unknown(kind: str, name: Any, allowed, where: str) -> ValueError:
    close = difflib.get_close_matches(str(name), list(allowed), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"Unknown augmentation {kind} {name!r} ({where}).{hint} Allowed: {', '.join(allowed)}.")


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One op's parameters. `p`: the probability each example gets the op (p = 0 switches it off)."""

    NAME: ClassVar[str] = ""

    p: float = _number(1.0, 0.0, 1.0)

    @classmethod
    def from_config(cls, raw: Any) -> "OpSpec | None":
        """The op's config value (a mapping, `{}`/null/true for the defaults, false for off): validated params or None when off."""
        where = f"{CONFIG_KEY}.{cls.NAME}"
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if raw is False:
            return None
        if raw is None or raw is True:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where} must be a mapping of parameters ({', '.join(fields)}), true/false or null; got {raw!r}.")
        for key in raw:
            if key not in fields:
                raise _unknown(f"parameter for {cls.NAME}:", key, fields, f"{where}.{key}")
        spec = cls(**{key: fields[key].metadata["spec"].check(raw[key], f"{where}.{key}") for key in raw})
        return spec if spec.p > 0 else None

    def params(self) -> dict[str, Any]:
        """{parameter: value}, `p` first: the form the ops in augment_ops.py take."""
        return dataclasses.asdict(self)


# The ops, in the order they run. Comments: what each parameter means.
@dataclasses.dataclass(frozen=True)
class HorizontalFlip(OpSpec):
    NAME = "horizontal_flip"
    p: float = _number(0.5, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class VerticalFlip(OpSpec):
    NAME = "vertical_flip"
    p: float = _number(0.5, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class RandomResizedCrop(OpSpec):
    NAME = "random_resized_crop"
    scale: tuple = _pair((0.08, 1.0), 0.0, 1.0, lo_open=True)  # crop area / image area
    ratio: tuple = _pair((3 / 4, 4 / 3), 0.0, 10.0, lo_open=True)  # crop width / height


@dataclasses.dataclass(frozen=True)
class RandomCrop(OpSpec):
    NAME = "random_crop"
    pad: int = _number(2, 0, 256, integer=True)  # pad, then crop back to H x W


@dataclasses.dataclass(frozen=True)
class Rotation(OpSpec):
    NAME = "rotation"
    degrees: float = _number(15.0, 0.0, 180.0)  # angle uniform in [-degrees, degrees]


@dataclasses.dataclass(frozen=True)
class Zoom(OpSpec):
    NAME = "zoom"
    range: tuple = _pair((0.9, 1.1), 0.1, 10.0)  # factor > 1 zooms in


@dataclasses.dataclass(frozen=True)
class Translation(OpSpec):
    NAME = "translation"
    fraction: float = _number(0.1, 0.0, 0.5)  # max shift / image side


@dataclasses.dataclass(frozen=True)
class ColorJitter(OpSpec):
    NAME = "color_jitter"
    brightness: float = _number(0.2, 0.0, 1.0)  # shift by up to this fraction of the image's value range
    contrast: float = _number(0.2, 0.0, 1.0)  # factor in [1 - contrast, 1 + contrast]
    saturation: float = _number(0.2, 0.0, 1.0)  # factor in [1 - saturation, 1 + saturation]; RGB only
    hue: float = _number(0.0, 0.0, 0.5)  # hue shift in turns; RGB only


@dataclasses.dataclass(frozen=True)
class Cutout(OpSpec):
    NAME = "cutout"
    size: float = _number(0.25, 0.0, 1.0, lo_open=True)  # box side / image side
    count: int = _number(1, 1, 16, integer=True)  # boxes per image


@dataclasses.dataclass(frozen=True)
class Mixup(OpSpec):
    NAME = "mixup"
    alpha: float = _number(0.2, 0.0, 10.0, lo_open=True)  # Beta(alpha, alpha) mixing weight


@dataclasses.dataclass(frozen=True)
class Cutmix(OpSpec):
    NAME = "cutmix"
    alpha: float = _number(1.0, 0.0, 10.0, lo_open=True)  # Beta(alpha, alpha): 1 - the pasted box's area


OP_SPECS: dict[str, type[OpSpec]] = {spec.NAME: spec for spec in (
    HorizontalFlip, VerticalFlip, RandomResizedCrop, RandomCrop, Rotation, Zoom, Translation, ColorJitter, Cutout, Mixup, Cutmix,
)}


def check_fill_mode(fill_mode: Any) -> str:
    if fill_mode not in FILL_MODES:
        raise ValueError(f"{CONFIG_KEY}.fill_mode = {fill_mode!r} is not allowed; use one of {', '.join(FILL_MODES)}.")
    return fill_mode


def parse_ops(ops: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """op name -> config value, validated: {op: params} in run order, switched-off ops dropped."""
    for name in ops:
        if name not in OP_SPECS:
            raise _unknown("op", name, OP_SPECS, CONFIG_KEY)
    specs = {name: OP_SPECS[name].from_config(ops[name]) for name in OP_SPECS if name in ops}  # run order, not config order
    return {name: spec.params() for name, spec in specs.items() if spec is not None}


def parse_augmentation(config: Mapping[str, Any] | None) -> tuple[dict[str, dict[str, Any]], str]:
    """The whole section (None or {} = no augmentation): (ops as `parse_ops` returns them, fill_mode).

    Every op is validated, also under `enabled: false` (which then returns no ops).
    """
    config = {} if config is None else config
    if not isinstance(config, Mapping):
        raise ValueError(f"{CONFIG_KEY} must be a mapping of op name -> parameters, got {type(config).__name__}: {config!r}.")
    for key in config:
        if key not in OP_SPECS and key not in POLICY_OPTIONS:
            raise _unknown("op", key, list(OP_SPECS) + list(POLICY_OPTIONS), CONFIG_KEY)
    enabled = config.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"{CONFIG_KEY}.enabled must be true or false, got {enabled!r}.")
    fill_mode = check_fill_mode(config.get("fill_mode", "min"))
    ops = parse_ops({name: config[name] for name in OP_SPECS if name in config})
    return (ops if enabled else {}), fill_mode
