"""One way every `cli(argv)` command runs: parse, run, turn known errors into exit codes.

    def cli(argv) -> int:
        return run_cli(_parser(), argv, _run, {ConfigError: 2, HistoryError: 1})

- argparse's own exits become return codes (0 for --help, 2 for a usage error, which
  argparse has already printed), so a caller (tests, `python -m pipeline`) gets a code,
  never a SystemExit;
- an exception of a type listed in `errors` prints `<prefix>: <message>` to stderr, without a
  traceback, and returns its code (the first matching type in the mapping's order wins);
- anything else propagates: a bug should show its traceback.

It lives in serving/ (the bottom layer) so the serving and pipeline commands share it.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Mapping, Sequence


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None, command: Callable[[argparse.Namespace], int],
            errors: Mapping[type, int] | None = None, *, prefix: str = "error") -> int:
    """`command(parser.parse_args(argv))`, with argparse exits and known `errors` as exit codes."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help (0) and on usage errors (2)
        return int(exit_.code or 0)
    errors = dict(errors or {})
    try:
        return command(args)
    except tuple(errors) as error:
        print(f"{prefix}: {error}", file=sys.stderr)
        return next(code for kind, code in errors.items() if isinstance(error, kind))
