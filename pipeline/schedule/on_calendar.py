"""cron -> systemd: `OnCalendar=` values that fire exactly when a cron expression does."""
from __future__ import annotations

from typing import Sequence

from pipeline.schedule.cron import _FIELDS, _CronItem, _FieldSpec, _portable_cron

_SYSTEMD_WEEKDAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def cron_to_on_calendar(expression: str) -> list[str]:
    """systemd `OnCalendar=` values that fire exactly when the cron expression does.

    Cron fires when day-of-month OR day-of-week matches if both are restricted; systemd
    ANDs them, so that case becomes two OnCalendar values (a timer fires on their union).

        cron_to_on_calendar("*/15 8-17 * * 1-5")  # -> ["Mon..Fri *-*-* 08..17:00/15:00"]
    """
    schedule = _portable_cron(expression)
    minute, hour, dom, month, dow = schedule.fields
    time_part = f"{_systemd_numbers(hour, _FIELDS[1])}:{_systemd_numbers(minute, _FIELDS[0])}:00"
    month_text = _systemd_numbers(month, _FIELDS[3])
    by_day_of_month = f"*-{month_text}-{_systemd_numbers(dom, _FIELDS[2])} {time_part}"
    by_weekday = f"{_systemd_weekdays(dow)} *-{month_text}-* {time_part}"
    if schedule.restricted(2) and schedule.restricted(4):
        return [by_day_of_month, by_weekday]
    return [by_weekday] if schedule.restricted(4) else [by_day_of_month]


def _systemd_numbers(items: Sequence[_CronItem], spec: _FieldSpec) -> str:
    if any(item.star and item.step == 1 for item in items):
        return "*"
    parts = []
    for item in items:
        if item.step == 1:
            parts.append(f"{item.start:02d}" if item.start == item.end else f"{item.start:02d}..{item.end:02d}")
        elif item.star or item.open_range:  # systemd's A/N: A, A+N, ... up to the field's maximum
            parts.append(f"{item.start:02d}/{item.step}")
        else:  # A-B/N: spelled out, older systemd releases lack A..B/N
            parts.extend(f"{value:02d}" for value in item.values())
    return ",".join(parts)


def _systemd_weekdays(items: Sequence[_CronItem]) -> str:
    days = sorted({value % 7 for item in items for value in item.values()}, key=lambda d: (d - 1) % 7)
    runs: list[list[int]] = []  # consecutive days in Mon..Sun order
    for day in days:
        if runs and (runs[-1][-1] + 1) % 7 == day and runs[-1][-1] != 0:
            runs[-1].append(day)
        else:
            runs.append([day])
    names = []
    for run in runs:
        if len(run) >= 3:
            names.append(f"{_SYSTEMD_WEEKDAYS[run[0]]}..{_SYSTEMD_WEEKDAYS[run[-1]]}")
        else:
            names.extend(_SYSTEMD_WEEKDAYS[day] for day in run)
    return ",".join(names)
