"""serving/layout.py, serving/contract.py, serving/atomic.py and serving/cli_runner.py: the
bottom-layer homes of shared facts and helpers (issue 12)."""
from __future__ import annotations

import argparse
import os

import pytest

from serving import atomic, contract, layout
from serving.cli_runner import run_cli


def test_model_name_rule():
    assert layout.is_model_name("digits-cnn.v2_1")
    for bad in ("", "-x", ".hidden", "a/b", "a b", "x" * 129, None, 3):
        assert not layout.is_model_name(bad), bad
    assert layout.is_model_name("x" * 128)


def test_versions_ignore_temp_dirs_files_and_out_of_range_names(tmp_path):
    for name in ("3", "10", ".tmp-1-abc", "notes", str(2**63)):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a stray file")
    (tmp_path / "10" / layout.SAVED_MODEL_FILE).write_bytes(b"")
    assert layout.list_versions(str(tmp_path)) == [3, 10]
    assert layout.list_versions(str(tmp_path), dirs_only=False) == [3, 7, 10]
    assert layout.list_versions(str(tmp_path), with_saved_model=True) == [10]
    assert layout.list_versions(str(tmp_path / "missing")) == []
    assert layout.parse_version(str(2**63 - 1)) == 2**63 - 1 and layout.parse_version("-1") is None


def test_next_version_is_above_every_version_name_and_not_below_now(tmp_path):
    base = tmp_path / "digits"
    first = layout.next_version(str(base))
    (base / str(first + 100)).mkdir(parents=True)
    assert layout.next_version(str(base)) == first + 101
    (base / str(first + 200)).write_text("a file still blocks its number")
    assert layout.next_version(str(base)) == first + 201


def test_contract_names_and_label_asset(tmp_path):
    assert contract.RAW_SIGNATURES == {"image": contract.IMAGES_SIGNATURE, "text": contract.TEXT_SIGNATURE}
    assert len({contract.EXAMPLES_SIGNATURE, contract.IMAGES_SIGNATURE, contract.TEXT_SIGNATURE, contract.CLASSIFY_SIGNATURE}) == 4
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / contract.LABEL_ASSET).write_text("cat\ndog\n\n")
    assert contract.read_label_names(str(tmp_path)) == ["cat", "dog"]
    with pytest.raises(OSError):
        contract.read_label_names(str(tmp_path / "none"))


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "out.json"
    atomic.atomic_write_json(str(path), {"a": 1})
    atomic.atomic_write_text(str(path), "second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["out.json"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(TypeError):
        atomic.atomic_write_text(str(path), b"not text")  # type: ignore[arg-type]
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


class _KnownError(ValueError):
    pass


def _parser():
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--n", type=int, required=True)
    return parser


def _command(args):
    if args.n < 0:
        raise _KnownError(f"--n must be >= 0, got {args.n}")
    if args.n == 99:
        raise RuntimeError("a bug")
    return args.n


def test_cli_runner_exit_codes(capsys):
    assert run_cli(_parser(), ["--n", "3"], _command, {_KnownError: 2}) == 3
    assert run_cli(_parser(), ["--help"], _command) == 0
    assert run_cli(_parser(), ["--n", "x"], _command) == 2  # argparse's usage error, printed by argparse
    capsys.readouterr()
    assert run_cli(_parser(), ["--n", "-1"], _command, {_KnownError: 2, ValueError: 1}, prefix="usage error") == 2
    assert capsys.readouterr().err == "usage error: --n must be >= 0, got -1\n"
    assert run_cli(_parser(), ["--n", "-1"], _command, {ValueError: 1, _KnownError: 2}) == 1  # first match wins
    with pytest.raises(RuntimeError):  # an unexpected error keeps its traceback
        run_cli(_parser(), ["--n", "99"], _command, {_KnownError: 2})
