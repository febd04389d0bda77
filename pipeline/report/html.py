"""The HTML template of the run report: page skeleton, inline CSS and small building blocks.

Everything is inline: CSS in a <style> element, figures as `data:image/png;base64`
URIs, no scripts, no fonts or stylesheets from elsewhere. A Content-Security-Policy
meta tag makes the browser refuse any other resource, should one ever slip in.
Every piece of text goes through `esc` (`html.escape`); building blocks return `Safe`
strings so nothing is escaped twice.

    body = table(["component", "status"], [("Trainer", badge("ran"))])
    page("digits run 1", header="<h1>digits</h1>", nav_items=[], sections=[("c", "Components", body)])
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from typing import Any, Iterable, Sequence

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
  margin:0;background:#f4f5f7;color:#1d2330}
main{max-width:1100px;margin:0 auto;padding:24px}
header,section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);
  padding:16px 24px;margin-bottom:16px}
h1{margin:0 0 6px;font-size:26px} h2{margin:0 0 12px;font-size:20px} h3{margin:16px 0 8px;font-size:16px}
.sub{color:#555;margin:4px 0}
nav{margin:-4px 0 16px;font-size:14px} nav a{margin-right:12px;color:#1f5fbf;text-decoration:none}
table{border-collapse:collapse;margin:8px 0;font-size:14px}
th,td{border-bottom:1px solid #e3e5e8;padding:6px 12px;text-align:left}
th{background:#f0f2f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td{background:#fdecec} tr.pass td{background:#edf7ee}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-size:13px;font-weight:600;
  color:#fff;vertical-align:middle}
.ok{background:#2e7d32} .bad{background:#c62828} .info{background:#1565c0} .warn{background:#ef6c00}
.muted{background:#757575}
.na{color:#8a5a00;background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:6px 0}
img{max-width:100%;height:auto;display:block;margin:8px 0;border:1px solid #e3e5e8}
code{font-family:"DejaVu Sans Mono",monospace;font-size:13px;word-break:break-all}
footer{color:#777;font-size:12px;text-align:center;margin:8px 0 24px}
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_STATUS_KINDS = {  # badge colour by status word; anything else is grey
    "ok": {"succeeded", "success", "ok", "complete", "completed", "ran", "passed", "pass", "applied",
           "blessed", "pushed", "serving"},
    "bad": {"failed", "failure", "error", "fail", "rejected", "not blessed"},
    "info": {"cached"},
    "warn": {"running", "partial", "warning", "degraded"},
}


class Safe(str):
    """HTML that is already escaped or built from escaped parts."""


def esc(value: Any) -> Safe:
    """Escapes any value for HTML text or a quoted attribute (Safe values pass through)."""
    return value if isinstance(value, Safe) else Safe(html.escape(str(value), quote=True))


def fmt(value: Any) -> str:
    """Numbers with 4 significant digits, booleans as yes/no, None as n/a, dicts/lists as JSON."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def fmt_duration(seconds: float) -> str:
    """42.1 s, 5 min 12 s, 2 h 03 min."""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def badge(text: Any) -> Safe:
    """A coloured pill; the colour follows the status word (green ok, red failed, ...)."""
    word = str(text).strip().lower()
    kind = next((k for k, words in _STATUS_KINDS.items() if word in words), "muted")
    return Safe(f'<span class="badge {kind}">{esc(text)}</span>')


def not_available(reason: str) -> Safe:
    return Safe(f'<p class="na">not available: {esc(reason)}</p>')


def _cell(value: Any) -> str:
    if isinstance(value, Safe):
        return f"<td>{value}</td>"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="num">{esc(fmt(value))}</td>'
    return f"<td>{esc(fmt(value))}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], row_classes: Sequence[str] | None = None) -> Safe:
    """An HTML table; cells are escaped unless Safe, numbers are right-aligned."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{esc(row_classes[i])}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>{''.join(_cell(c) for c in row)}</tr>")
    return Safe(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def png_img(png: bytes, alt: str) -> Safe:
    """An <img> with the PNG embedded as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    return Safe(f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">')


def subsection(element_id: str, title: str, body: Safe) -> Safe:
    return Safe(f'<div id="{esc(element_id)}"><h3>{esc(title)}</h3>{body}</div>')


def page(title: str, header: Safe, sections: Sequence[tuple[str, str, Safe]]) -> str:
    """The whole document: header card, a link bar, one card per (id, title, body) section."""
    nav = " ".join(f'<a href="#{esc(sid)}">{esc(name)}</a>' for sid, name, _ in sections)
    cards = "\n".join(f'<section id="{esc(sid)}"><h2>{esc(name)}</h2>{body}</section>' for sid, name, body in sections)
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
        f'<body><main><header id="header">{header}</header>\n<nav>{nav}</nav>\n{cards}\n'
        f"<footer>generated {esc(generated)} by pipeline.report</footer></main></body></html>\n"
    )
