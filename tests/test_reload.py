"""Live reload, end to end: edits made the way users and their editors make them."""
import os
import shutil
import subprocess
import time

import pytest

from conftest import worker_source, write


def started_host(folder, start_host, *names, args=()):
    for name in names:
        write(folder / f"{name}.py", worker_source(1))
    host = start_host(folder, *args)
    for name in names:
        host.wait_started(name, 1)
    return host


def test_an_edit_swaps_the_worker_old_stopped_before_new_started_state_kept(folder, start_host):
    host = started_host(folder, start_host, "svc", "other")
    write(folder / "svc.py", worker_source(2))
    host.wait_started("svc", 2)
    assert host.events("svc") == ["svc start 1 1", "svc stop 1 1", "svc start 2 2"]
    assert host.starts("other") == [1]
    host.wait_log("| svc        | reloaded (generation 1) in")  # the new run may report before the host logs it
    assert host.stop() == 0


@pytest.mark.parametrize(
    "broken, expected",
    [
        ("def run(ctx)\n    pass\n", ['svc.py", line 1', "SyntaxError"]),
        ("X = 1\nraise KeyError('at import')\n", ['svc.py", line 2', "KeyError: 'at import'"]),
        ("def main(ctx):\n    pass\n", ["svc.py no longer defines run(ctx)"]),
        ("X = 1\nrun = 'not callable'\n", ["svc.py:2: run must be callable"]),
        ("def run(ctx):\n    pass\n\nBACKOFF = {'factor': 0}\n", ["svc.py:4: BACKOFF['factor']: must be >= 1"]),
    ],
    ids=["syntax", "import-time-exception", "run-deleted", "run-not-callable", "bad-setting"],
)
def test_a_bad_edit_is_reported_the_old_version_keeps_running_and_a_good_save_recovers(
    folder, start_host, broken, expected
):
    host = started_host(folder, start_host, "svc")
    write(folder / "svc.py", broken)
    host.wait_log("not ")  # "not loaded" (syntax, caught before stopping) or "not reloaded"
    host.wait_for(lambda: all(e in host.log() for e in expected), f"{expected} in the log")
    host.wait_for(lambda: host.events("svc")[-1].startswith("svc start 1"), "the old version running")
    assert "previous version" in host.log()
    write(folder / "svc.py", worker_source(1))  # the bad edit undone: nothing to reload
    host.wait_log("workers/svc.py is back to the code that runs")
    write(folder / "svc.py", worker_source(3))
    host.wait_started("svc", 3)
    assert host.events("svc")[-1] == f"svc start 3 {len(host.starts('svc'))}"
    assert host.proc.poll() is None and host.stop() == 0


def test_touch_and_identical_rewrites_reload_nothing(folder, start_host):
    host = started_host(folder, start_host, "svc")
    os.utime(folder / "svc.py")
    write(folder / "svc.py", (folder / "svc.py").read_text())
    subprocess.run(["touch", str(folder / "svc.py")], check=True)
    host.barrier()
    assert host.starts("svc") == [1]
    assert host.stop() == 0


def test_add_delete_and_rename_workers(folder, start_host):
    host = started_host(folder, start_host, "keep", "doomed", "mover", "retiree")
    write(folder / "fresh.py", worker_source(1))
    host.wait_started("fresh", 1)
    os.remove(folder / "doomed.py")
    host.wait_for(lambda: host.events("doomed")[-1].startswith("doomed stop"), "doomed to stop")
    host.wait_log("| doomed     | removed: its file is gone")
    os.rename(folder / "mover.py", folder / "moved.py")
    host.wait_started("moved", 1)
    assert host.events("mover")[-1].startswith("mover stop")
    os.rename(folder / "retiree.py", folder / "_retiree.py")  # now a helper
    host.wait_for(lambda: host.events("retiree")[-1].startswith("retiree stop"), "retiree to stop")
    host.barrier()
    assert host.starts("keep") == [1] and host.starts("retiree") == [1]
    assert host.stop() == 0


def test_a_helper_edit_reloads_exactly_its_importers_in_dependency_order(folder, start_host):
    write(folder / "_base.py", "WORD = 'one'\n")
    write(folder / "_mid.py", "from . import _base\n\ndef word():\n    return _base.WORD\n")
    top = "from . import _mid\n"
    body = "report(ctx.name, 'word', _mid.word())"
    write(folder / "direct.py", worker_source(1, top="from . import _base\n"))
    write(folder / "indirect.py", worker_source(1, top=top, body=body))
    write(folder / "bystander.py", worker_source(1))
    host = start_host(folder)
    host.wait_for(lambda: "indirect word one" in host.events(), "indirect to start")
    write(folder / "_base.py", "WORD = 'two'\n")
    host.wait_for(lambda: "indirect word two" in host.events(), "indirect to see the new helper")
    host.wait_for(lambda: len(host.starts("direct")) == 2, "direct to restart")
    host.barrier()
    assert host.starts("bystander") == [1]
    assert len(host.starts("indirect")) == 2 and len(host.starts("direct")) == 2
    assert host.stop() == 0


def test_crash_fix_save_restarts_at_once_with_the_new_code(folder, start_host):
    write(folder / "buggy.py", worker_source(1, body="raise RuntimeError('bug')",
                                              BACKOFF={"initial": 60, "fatal_after": 2}))
    host = start_host(folder)
    host.wait_log("| buggy      | backoff: crashed; restarting in")
    write(folder / "buggy.py", worker_source(2))
    host.wait_started("buggy", 2)
    # and from fatal
    write(folder / "buggy.py", worker_source(3, body="raise RuntimeError('bug')",
                                              BACKOFF={"initial": 0.01, "fatal_after": 2}))
    host.wait_log("| buggy      | fatal: crashed 2 times in a row")
    write(folder / "buggy.py", worker_source(4))
    host.wait_started("buggy", 4)
    assert host.stop() == 0


def test_changed_settings_take_effect_on_reload(folder, start_host):
    host = started_host(folder, start_host, "svc")
    write(folder / "svc.py", worker_source(2, body="return", RESTART="never"))
    host.wait_log("| svc        | exited: returned; RESTART='never'")
    assert host.stop() == 0


def test_an_edit_made_while_the_host_starts_is_picked_up(folder, start_host):
    # "aa_editor" starts first and at once rewrites "target", which may still be starting
    write(folder / "aa_editor.py", worker_source(1, top="import pathlib", body='''
        path = pathlib.Path(__file__).with_name("target.py")
        path.write_text(path.read_text().replace("VERSION = 1", "VERSION = 2"))
        '''))
    write(folder / "target.py", worker_source(1))
    host = start_host(folder)
    host.wait_started("target", 2)
    assert host.stop() == 0


def test_no_reload_turns_watching_off(folder, start_host):
    host = started_host(folder, start_host, "svc", args=["--no-reload"])
    assert "(reload off)" in host.log()
    write(folder / "svc.py", worker_source(2))
    deadline = time.monotonic() + 1.5  # well past every debounce window: nothing may happen
    while time.monotonic() < deadline:
        assert host.starts("svc") == [1]
        time.sleep(0.05)
    assert host.stop() == 0


@pytest.mark.parametrize("args, interval, watchdog", [([], 0.001, True), (["--no-reload"], 0.005, False)])
def test_watching_shortens_the_switch_interval_and_no_reload_leaves_it_and_watchdog_out(
    folder, start_host, args, interval, watchdog
):
    body = "report(ctx.name, 'info', sys.getswitchinterval(), 'watchdog' in sys.modules)"
    write(folder / "svc.py", worker_source(body=body, top="import sys"))
    host = start_host(folder, *args)
    line = host.wait_for(lambda: [e for e in host.events("svc") if " info " in e], "the report")
    assert line[0].split()[2:] == [str(interval), str(watchdog)]
    assert host.stop() == 0


# --- the save patterns of real editors (see EDITOR_EVENTS in the README) ---


def in_place(path, text):
    with open(path, "w") as f:
        f.write(text)


def truncate_then_write_slowly(path, text):
    with open(path, "w") as f:
        f.write(text[: len(text) // 2])
        f.flush()
        os.fsync(f.fileno())
        time.sleep(0.05)  # a slow writer: the file is half-written for a while
        f.write(text[len(text) // 2:])


def temp_then_replace(path, text):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def jetbrains_safe_write(path, text):
    tmp = path.with_name(path.name + "___jb_tmp___")
    old = path.with_name(path.name + "___jb_old___")
    tmp.write_text(text)
    os.rename(path, old)
    os.rename(tmp, path)
    os.remove(old)


def vim_backup_rename(path, text):
    probe = path.with_name("4913")
    probe.write_text("")
    os.remove(probe)
    backup = path.with_name(path.name + "~")
    os.rename(path, backup)
    path.write_text(text)
    os.remove(backup)


def delete_then_create(path, text):
    os.remove(path)
    path.write_text(text)


def sed_in_place(path, text):
    old_version = next(line for line in path.read_text().splitlines() if line.startswith("VERSION"))
    new_version = next(line for line in text.splitlines() if line.startswith("VERSION"))
    subprocess.run(["sed", "-i", f"s/^{old_version}$/{new_version}/", str(path)], check=True)


def real_vim(path, text):
    new_version = next(line for line in text.splitlines() if line.startswith("VERSION"))
    subprocess.run(["vim", "-N", "-u", "NONE", "-i", "NONE", "-es", "-c", "set backupskip= writebackup backupcopy=auto",
                    "-c", f"%s/^VERSION = .*/{new_version}/", "-c", "wq", str(path)],
                   check=True, timeout=30, stdin=subprocess.DEVNULL)


SAVES = [in_place, truncate_then_write_slowly, temp_then_replace, jetbrains_safe_write,
         vim_backup_rename, delete_then_create, sed_in_place]
if shutil.which("vim"):
    SAVES.append(real_vim)


@pytest.mark.parametrize("save", SAVES, ids=lambda f: f.__name__)
def test_each_editor_save_pattern_reloads_exactly_once_with_the_complete_file(folder, start_host, save):
    host = started_host(folder, start_host, "svc")
    for version in (2, 3):
        save(folder / "svc.py", worker_source(version))
        host.wait_started("svc", version)
    host.barrier()
    assert host.starts("svc") == [1, 2, 3]
    assert "not loaded" not in host.log() and "not reloaded" not in host.log()
    assert host.stop() == 0


def test_git_checkout_of_another_branch_reloads_each_changed_worker_once(folder, start_host):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder,
                       check=True, capture_output=True, timeout=30)

    names = [f"w{i}" for i in range(8)]
    for name in names:
        write(folder / f"{name}.py", worker_source(1))
    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-qm", "one")
    git("checkout", "-qb", "other")
    for name in names[:5]:
        write(folder / f"{name}.py", worker_source(2))
    git("commit", "-qam", "two")
    git("checkout", "-q", "main")
    host = start_host(folder)
    for name in names:
        host.wait_started(name, 1)
    git("checkout", "-q", "other")
    for name in names[:5]:
        host.wait_started(name, 2)
    host.barrier()
    for name in names[:5]:
        assert host.starts(name) == [1, 2], name
    for name in names[5:]:
        assert host.starts(name) == [1], name
    assert_one_batch(host.events(), names[:5])
    assert host.stop() == 0


def assert_one_batch(events, names):
    """A swap stops every worker it affects before it starts any: one batch."""
    stops = [i for i, e in enumerate(events) if e.split()[0] in names and e.split()[1:3] == ["stop", "1"]]
    starts = [i for i, e in enumerate(events) if e.split()[0] in names and e.split()[1:3] == ["start", "2"]]
    assert len(stops) == len(starts) == len(names) and max(stops) < min(starts), events


def test_the_debounce_window_is_configurable(folder, start_host):
    host = started_host(folder, start_host, "a", "b", args=["--debounce", "2"])
    write(folder / "a.py", worker_source(2))
    time.sleep(0.1)  # within the 2 s window: the two saves make one batch
    write(folder / "b.py", worker_source(2))
    host.wait_started("a", 2)
    host.wait_started("b", 2)
    assert_one_batch(host.events(), ["a", "b"])
    assert host.stop() == 0


def test_a_storm_of_saves_ends_on_the_last_version_with_threads_back_to_baseline(folder, start_host):
    host = started_host(folder, start_host, "svc")
    baseline = host.threads()
    for version in range(2, 42):
        write(folder / "svc.py", worker_source(version))
    host.wait_started("svc", 41)
    host.barrier()
    host.wait_for(lambda: host.threads() == baseline + 1, "threads back to baseline (+ the barrier worker)")
    assert host.events("svc")[-1].startswith("svc start 41")
    starts = host.starts("svc")
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert host.stop() == 0


def test_package_workers_sub_package_helpers_and_absolute_imports(folder, start_host):
    (folder / "svc").mkdir()
    write(folder / "svc" / "__init__.py",
          worker_source(1, top="from .impl import word", body="report(ctx.name, 'word', word())"))
    write(folder / "svc" / "impl.py", "def word():\n    return 'one'\n")
    (folder / "_shared").mkdir()
    write(folder / "_shared" / "__init__.py", "")
    write(folder / "_shared" / "text.py", "PREFIX = 'a'\n")
    (folder / "tools").mkdir()  # a sub-package without run: a helper
    write(folder / "tools" / "__init__.py", "LEVEL = 1\n")
    write(folder / "absolute.py", worker_source(
        1, top="from workers._shared import text\nfrom workers import tools",
        body="report(ctx.name, 'prefix', text.PREFIX, tools.LEVEL)"))
    host = start_host(folder)
    host.wait_for(lambda: "svc word one" in host.events() and "absolute prefix a 1" in host.events(), "both")
    assert "tools.py" not in host.log() and "tools/__init__.py defines no run(ctx): treated as a helper" in host.log()
    write(folder / "svc" / "impl.py", "def word():\n    return 'two'\n")
    host.wait_for(lambda: "svc word two" in host.events(), "svc to use its new submodule")
    write(folder / "_shared" / "text.py", "PREFIX = 'b'\n")
    host.wait_for(lambda: "absolute prefix b 1" in host.events(), "the absolute import reloaded")
    write(folder / "tools" / "__init__.py", "LEVEL = 2\n")
    host.wait_for(lambda: "absolute prefix b 2" in host.events(), "the sub-package helper reloaded")
    host.barrier()
    assert len(host.starts("svc")) == 2 and len(host.starts("absolute")) == 3
    assert host.stop() == 0


def test_the_folders_own_init_is_a_helper_too(folder, start_host):
    write(folder / "__init__.py", "NAME = 'first'\n")
    write(folder / "uses.py", worker_source(1, top="from . import NAME", body="report(ctx.name, 'name', NAME)"))
    host = start_host(folder)
    host.wait_for(lambda: "uses name first" in host.events(), "uses to start")
    write(folder / "__init__.py", "NAME = 'second'\n")
    host.wait_for(lambda: "uses name second" in host.events(), "uses to see the new package")
    assert host.stop() == 0


def test_a_deleted_worker_is_forgotten_and_a_new_file_of_its_name_starts_with_its_state(folder, start_host):
    host = started_host(folder, start_host, "svc")
    os.remove(folder / "svc.py")
    host.wait_log("| svc        | removed: its file is gone")
    write(folder / "probe.py",
          worker_source(1, top="import sys", body="report(ctx.name, 'loaded', 'workers.svc' in sys.modules)"))
    host.wait_for(lambda: "probe loaded False" in host.events(), "the probe")
    write(folder / "svc.py", worker_source(2))  # git stash pop, an editor's delete and rewrite
    host.wait_started("svc", 2)
    assert host.events("svc")[-1] == "svc start 2 2"  # ctx.state is the worker's for the life of the host
    assert host.stop() == 0


def test_a_deleted_helper_fails_its_importers_reload_and_they_keep_running(folder, start_host):
    write(folder / "_gone.py", "X = 1\n")
    write(folder / "user.py", worker_source(1, top="from . import _gone"))
    host = start_host(folder)
    host.wait_started("user", 1)
    os.remove(folder / "_gone.py")
    host.wait_log("| user       | not reloaded: it imports workers._gone (its file is gone)")
    host.wait_for(lambda: host.events("user")[-1] == "user start 1 2", "the previous version to resume")
    write(folder / "_gone.py", "X = 2\n")
    host.wait_started("user", 1, count=3)
    assert host.stop() == 0


def test_sys_exit_at_import_time_of_a_new_version_does_not_end_the_host(folder, start_host):
    host = started_host(folder, start_host, "svc")
    write(folder / "svc.py", "import sys\nsys.exit(3)\n")
    host.wait_log("SystemExit: 3")
    host.wait_for(lambda: host.events("svc")[-1] == "svc start 1 2", "the previous version to resume")
    assert host.stop() == 0
