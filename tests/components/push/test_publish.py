"""Atomic push into TF Serving's layout."""
import os
import threading

import pytest

from components.push.publish import existing_versions, fingerprint, publish, read_push_record


def make_model(path):
    os.makedirs(os.path.join(path, "variables"))
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"x" * 1000)
    return path


def test_publish_creates_increasing_integer_versions(tmp_path):
    src = make_model(str(tmp_path / "m"))
    v1, p1, _ = publish(src, str(tmp_path / "serving"), "digits")
    v2, p2, _ = publish(src, str(tmp_path / "serving"), "digits")
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
    assert len({v for v, _, _ in results}) == 6


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


def test_push_record_names_the_source_and_fingerprint(tmp_path):
    src = make_model(str(tmp_path / "m"))
    version, path, already = publish(src, str(tmp_path / "s"), "digits", source="/runs/Trainer/model/7")
    record = read_push_record(path)
    assert not already
    assert record["source"] == "/runs/Trainer/model/7" and record["fingerprint"] == fingerprint(src) == fingerprint(path)
    assert record["fingerprint"].startswith("sha256:") and record["model_name"] == "digits"


def test_same_source_and_bytes_is_not_pushed_twice(tmp_path):
    src = make_model(str(tmp_path / "m"))
    first = publish(src, str(tmp_path / "s"), "digits", source="model/7")
    again = publish(src, str(tmp_path / "s"), "digits", source="model/7")
    assert again == (first.version, first.path, True)
    assert existing_versions(str(tmp_path / "s" / "digits")) == [first.version]


def test_other_source_or_changed_bytes_is_a_new_version(tmp_path):
    src = make_model(str(tmp_path / "m"))
    first = publish(src, str(tmp_path / "s"), "digits", source="model/7")
    other = publish(src, str(tmp_path / "s"), "digits", source="model/8")  # a new model artifact, same bytes
    with open(os.path.join(src, "variables", "v"), "wb") as f:
        f.write(b"changed")
    changed = publish(src, str(tmp_path / "s"), "digits", source="model/7")
    assert not other.already_pushed and not changed.already_pushed
    assert first.version < other.version < changed.version


def test_concurrent_reruns_of_one_push_make_one_version(tmp_path):
    src = make_model(str(tmp_path / "m"))
    results = []
    threads = [threading.Thread(target=lambda: results.append(publish(src, str(tmp_path / "s"), "digits", source="model/7"))) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(existing_versions(str(tmp_path / "s" / "digits"))) == 1
    assert sorted(r.already_pushed for r in results) == [False, True, True, True]
    assert not [d for d in os.listdir(tmp_path / "s" / "digits") if not d.isdigit()]


def test_model_directory_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    import components.push.publish as pub

    src = make_model(str(tmp_path / "m"))
    model_base = os.path.realpath(tmp_path / "s" / "digits")
    synced_with_version = []
    real_fsync = os.fsync

    def spy(fd):
        if os.path.realpath(f"/proc/self/fd/{fd}") == model_base:
            synced_with_version.append(existing_versions(model_base))
        return real_fsync(fd)

    monkeypatch.setattr(pub.os, "fsync", spy)
    version, _, _ = publish(src, str(tmp_path / "s"), "digits")
    assert [version] in synced_with_version  # the directory entry of the new version is durable
