"""Cron expressions: the standard 5 fields (and @daily-style aliases), validated up front
with a message that names the bad field, and their fire times in local time (croniter).

    parse_cron("*/15 8-17 * * 1-5").expression  # -> "*/15 8-17 * * 1-5"
    next(cron_fire_times("0 2 * * *"))          # epoch seconds of the next 02:00
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from typing import Callable, Iterator

from croniter import croniter

VALID_CRON_EXAMPLE = '"0 2 * * *" (every day at 02:00) or "*/15 * * * *" (every 15 minutes)'


class ScheduleError(ValueError):
    """Bad input to the scheduler (config, cron expression, option); the message says how to fix it."""


class InvalidCronError(ScheduleError):
    """A cron expression this scheduler does not accept."""


_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_WEEKDAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_CRON_ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_NO_EXTENSIONS = "non-standard extensions such as L, W, #, ? and H are not supported"
_CRON_ITEM = re.compile(r"^(?P<base>\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?$")


@dataclasses.dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: dict[str, int] = dataclasses.field(default_factory=dict)


_FIELDS = (
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day-of-month", 1, 31),
    _FieldSpec("month", 1, 12, _MONTHS),
    _FieldSpec("day-of-week", 0, 7, _WEEKDAYS),  # 0 and 7 are both Sunday
)


@dataclasses.dataclass(frozen=True)
class _CronItem:
    """One comma-separated item of a field: `*`, `a`, `a-b`, each optionally `/step`."""

    start: int
    end: int
    step: int
    star: bool  # written as `*` (with or without a step)
    open_range: bool  # written as `a/step`: from a to the field's maximum

    def values(self) -> list[int]:
        return list(range(self.start, self.end + 1, self.step))


@dataclasses.dataclass(frozen=True)
class CronSchedule:
    """A validated standard 5-field cron expression (aliases like @daily expanded)."""

    expression: str
    fields: tuple[tuple[_CronItem, ...], ...]

    def restricted(self, index: int) -> bool:
        return self.fields[index] != (_star_item(_FIELDS[index]),)


def _star_item(spec: _FieldSpec) -> _CronItem:
    return _CronItem(spec.low, spec.high, 1, star=True, open_range=False)


def parse_cron(expression: str) -> CronSchedule:
    """Validates a standard cron expression: 5 fields or @hourly/@daily/@weekly/@monthly/@yearly.

    Non-standard extensions (seconds field, L, W, #, ?, H) are refused so that what runs
    here can always be handed to crontab or a systemd timer.

        parse_cron("0 2 * * 1-5")  # 02:00 on weekdays
    """
    text = " ".join(str(expression).split())
    if text.startswith("@") and text.lower() not in _CRON_ALIASES:
        _cron_error(expression, f"{text} is not a schedule this scheduler knows; use one of "
                                f"{', '.join(_CRON_ALIASES)} or 5 fields")
    text = _CRON_ALIASES.get(text.lower(), text)
    parts = text.split(" ") if text else []
    if len(parts) != 5:
        _cron_error(expression, f"it has {len(parts)} field(s), not 5 "
                                "(minute hour day-of-month month day-of-week)")
    fields = tuple(_parse_field(expression, part, spec) for part, spec in zip(parts, _FIELDS))
    if not croniter.is_valid(text):  # a second opinion from the library that computes fire times
        _cron_error(expression, "croniter rejects it")
    return CronSchedule(text, fields)


def _parse_field(expression: str, text: str, spec: _FieldSpec) -> tuple[_CronItem, ...]:
    items = []
    for raw in text.split(","):
        match = _CRON_ITEM.match(raw.lower())
        if not match:
            _cron_error(expression, f"{spec.name} item {raw!r} is not '*', 'N' or 'N-M', each optionally "
                                    f"with '/STEP' ({_NO_EXTENSIONS})")
        base, step_text = match["base"], match["step"]
        step = int(step_text) if step_text else 1
        if step < 1:
            _cron_error(expression, f"{spec.name} step /{step_text} must be at least 1")
        if base == "*":
            items.append(_CronItem(spec.low, spec.high, step, star=True, open_range=False))
            continue
        bounds = [_field_value(expression, value, spec) for value in base.split("-")]
        start, end = bounds[0], bounds[-1]
        open_range = len(bounds) == 1 and step_text is not None
        if open_range:
            end = spec.high
        if start > end:
            _cron_error(expression, f"{spec.name} range {base} runs backwards; write it as two "
                                    "items, e.g. '5-6,0-1' instead of '5-1'")
        items.append(_CronItem(start, end, step, star=False, open_range=open_range))
    return tuple(items)


def _field_value(expression: str, value: str, spec: _FieldSpec) -> int:
    if not value.isdigit():
        if value not in spec.names:
            names = f" or a name like {next(iter(spec.names)).upper()}" if spec.names else ""
            _cron_error(expression, f"{spec.name} value {value.upper()!r} is not a number{names} "
                                    f"({_NO_EXTENSIONS})")
        return spec.names[value]
    if not spec.low <= int(value) <= spec.high:
        _cron_error(expression, f"{spec.name} value {value} is outside {spec.low}-{spec.high}")
    return int(value)


def _cron_error(expression: str, problem: str) -> None:
    raise InvalidCronError(
        f"invalid cron expression {expression!r}: {problem}. A valid example: {VALID_CRON_EXAMPLE}"
    )


def cron_fire_times(expression: str, clock: Callable[[], float] = time.time) -> Iterator[float]:
    """Endless fire times (epoch seconds) of `expression` in local time, each after the
    previous one and after `clock()` when asked: fire times missed while the machine
    slept are dropped, like cron does.
    """
    schedule = parse_cron(expression)
    last = clock()
    while True:
        # A naive local datetime in and out: `.timestamp()` then applies the local DST rules.
        start = dt.datetime.fromtimestamp(max(last, clock()))
        last = croniter(schedule.expression, start).get_next(dt.datetime).timestamp()
        yield last


def _portable_cron(expression: str) -> CronSchedule:
    """Parses a cron expression that means the same to croniter, crond and systemd."""
    schedule = parse_cron(expression)
    both_days = schedule.restricted(2) and schedule.restricted(4)
    if both_days and any(item.star for item in schedule.fields[2] + schedule.fields[4]):
        raise ScheduleError(
            f"cron expression {expression!r} cannot be expressed unambiguously: with both days "
            "restricted, crond treats a day field starting with '*' (like '*/2') as unrestricted "
            "and ANDs the days, while croniter (this scheduler) ORs them. Write the field as a "
            "range instead, e.g. '1-31/2' or '0-6/2', to mean OR"
        )
    return schedule
