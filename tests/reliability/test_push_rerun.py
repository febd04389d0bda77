"""A push killed mid-way or right after its rename: the rerun neither duplicates nor leaks."""
import os
import signal
import subprocess
import sys
import textwrap
import time

from components.push.publish import STALE_TMP_SECONDS, TMP_PREFIX, _owner, existing_versions, publish, remove_stale_tmp
from tests.components.push.test_publish import make_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _tmp(model_base, name, age_s=0.0):
    path = os.path.join(model_base, name)
    os.makedirs(os.path.join(path, "variables"))
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"partial")
    old = time.time() - age_s
    for p in (os.path.join(path, "saved_model.pb"), os.path.join(path, "variables"), path):
        os.utime(p, (old, old))
    return name


def test_only_stale_temp_directories_are_removed(tmp_path):
    base = str(tmp_path / "digits")
    hexid = "0" * 32
    dead = _tmp(base, f"{TMP_PREFIX}{_dead_pid()}-{hexid}-{_owner()}")
    live = _tmp(base, f"{TMP_PREFIX}{os.getpid()}-{hexid}-{_owner()}", age_s=STALE_TMP_SECONDS / 2)  # a push in progress
    other_host = _tmp(base, f"{TMP_PREFIX}{_dead_pid()}-{hexid}-elsewhere.pid_4026531836_")  # its pid means nothing here
    old_format_recent = _tmp(base, f"{TMP_PREFIX}{hexid}")
    old_format_stale = _tmp(base, f"{TMP_PREFIX}{'1' * 32}", age_s=STALE_TMP_SECONDS + 60)
    os.makedirs(os.path.join(base, "7"))
    removed = remove_stale_tmp(base)
    assert sorted(removed) == sorted([dead, old_format_stale])
    assert sorted(os.listdir(base)) == sorted([live, other_host, old_format_recent, "7"])


def test_a_recent_file_keeps_an_old_temp_directory(tmp_path):
    """A long copy keeps writing inside; only the newest mtime in the tree counts."""
    base = str(tmp_path / "digits")
    name = _tmp(base, f"{TMP_PREFIX}{'2' * 32}", age_s=STALE_TMP_SECONDS + 60)
    with open(os.path.join(base, name, "variables", "variables.data-00000-of-00001"), "wb") as f:
        f.write(b"still copying")
    assert remove_stale_tmp(base) == [] and os.listdir(base) == [name]


def test_sigkilled_push_leaves_a_temp_directory_that_the_next_push_removes(tmp_path):
    src = make_model(str(tmp_path / "m"))
    serving = str(tmp_path / "s")
    base = os.path.join(serving, "digits")
    # A real pusher, killed with SIGKILL after its copy and before its rename.
    script = textwrap.dedent(f"""
        import time
        import components.push.publish as pub
        pub._fsync_tree = lambda root: (print("copied", flush=True), time.sleep(120))
        pub.publish({src!r}, {serving!r}, "digits", source="model/7")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "copied"
        leftovers = [d for d in os.listdir(base) if d.startswith(TMP_PREFIX)]
        assert len(leftovers) == 1 and existing_versions(base) == []
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert os.listdir(base) == leftovers  # a killed push leaves its copy behind...
    version, _, already = publish(src, serving, "digits", source="model/7")
    assert not already and os.listdir(base) == [str(version)]  # ...the next push removes it


def _artifacts(tmp_path):
    from components.tfx_compat import tfx  # noqa: F401
    from tfx.types import standard_artifacts

    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "Trainer" / "model" / "7")
    make_model(os.path.join(model.uri, "Format-Serving"))
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", 1)
    return model, blessing


def _run_pusher(model, blessing, serving):
    from components.tfx_compat import tfx  # noqa: F401
    from tfx.types import standard_artifacts

    from components.push.executor import Executor

    pushed = standard_artifacts.PushedModel()
    Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
                  {"serving_base": serving, "model_name": "digits"})
    return pushed


def test_pusher_rerun_after_a_crash_reports_already_pushed(tmp_path):
    """The run died after the rename, before MLMD recorded the Pusher: TFX reruns it on the same Model."""
    model, blessing = _artifacts(tmp_path)
    serving = str(tmp_path / "serving")
    first = _run_pusher(model, blessing, serving)
    rerun = _run_pusher(model, blessing, serving)
    base = os.path.join(serving, "digits")
    assert existing_versions(base) == [first.get_int_custom_property("pushed_version")]
    assert first.get_int_custom_property("already_pushed") == 0
    assert rerun.get_int_custom_property("already_pushed") == 1 and rerun.get_int_custom_property("pushed") == 1
    assert rerun.get_int_custom_property("pushed_version") == first.get_int_custom_property("pushed_version")
    assert rerun.get_string_custom_property("pushed_destination") == first.get_string_custom_property("pushed_destination")


def test_run_summary_reports_the_rerun_as_already_pushed(tmp_path, monkeypatch):
    """The summary/README word for "nothing new was pushed", not a second `pushed`."""
    import pipeline.run as run

    model, blessing = _artifacts(tmp_path)
    serving = str(tmp_path / "serving")
    _run_pusher(model, blessing, serving)
    rerun = _run_pusher(model, blessing, serving)

    from ml_metadata.proto import metadata_store_pb2

    execution = metadata_store_pb2.Execution(last_known_state=metadata_store_pb2.Execution.COMPLETE)  # it really ran again
    # MLMD itself is not the subject here: hand summarize() the Pusher's execution as MLMD would.
    monkeypatch.setattr(run, "open_store", lambda path: None)
    monkeypatch.setattr(run, "run_executions", lambda store, name, run_id: {
        "Pusher": {"execution": execution, "inputs": {}, "outputs": {"pushed_model": [rerun.mlmd_artifact]}}})
    summary = run.summarize({"pipeline_name": "p", "runs_dir": str(tmp_path), "push": {"serving_base": serving}}, "r1", ["Pusher"])
    assert summary["pushed"] is None and summary["already_pushed"]["version"] == rerun.get_int_custom_property("pushed_version")
    assert "nothing new" in run.format_summary(summary)
