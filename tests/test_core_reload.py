"""The host reloads its own core.py in place: tested on a copy of the package."""
from conftest import private_package, worker_source, write


def test_an_edit_of_core_py_is_used_at_once_without_restarting_workers_and_a_broken_one_is_survived(
    folder, start_host, tmp_path
):
    copy, private = private_package(tmp_path)
    write(folder / "steady.py", worker_source(1))
    write(folder / "crasher.py", worker_source(1, body="raise RuntimeError('again')",
                                                BACKOFF={"initial": 0.05, "max": 0.1, "fatal_after": 100000}))
    host = start_host(folder, "--log-level", "debug", **private)
    host.wait_started("steady", 1)
    host.wait_log("backoff: crashed; restarting in")
    assert f"supervising with {copy / 'core.py'}" in host.log()  # the host runs from the copy

    core = copy / "core.py"
    original = core.read_text()
    assert original.count('restarting in {wait:.2f} s') == 1
    write(core, original.replace('restarting in {wait:.2f} s', 'coming back in {wait:.2f} s'))
    host.wait_log("core reloaded (generation 1)")
    host.wait_log("backoff: crashed; coming back in", count=2)

    write(core, original.replace("def wakeup(", "def wakeup(:"))
    host.wait_log("the edit of core.py was not applied; the host runs on the previous core")
    seen = host.log().count("coming back in")
    host.wait_log("coming back in", count=seen + 2)  # still the reloaded core, still supervising

    write(core, original.replace("def exit_status(", "def _exit_status_renamed("))
    host.wait_log("core.py no longer defines exit_status()")

    (copy / "backoff.py").touch()  # same bytes: nothing to say
    write(copy / "settings.py", (copy / "settings.py").read_text() + "\n# edited\n")
    host.wait_log("settings.py changed: only core.py reloads in place; restart hotreload to use it")
    assert "backoff.py changed" not in host.log()
    assert host.starts("steady") == [1]
    assert host.stop() == 0
    assert host.events("steady")[-1] == "steady stop 1 1"


def test_a_core_that_would_break_the_loop_is_refused_and_the_fix_gets_through(folder, start_host, tmp_path):
    copy, private = private_package(tmp_path)
    write(folder / "crasher.py", worker_source(1, body="raise RuntimeError('again')",
                                                BACKOFF={"initial": 0.05, "max": 0.1, "fatal_after": 100000}))
    host = start_host(folder, **private)
    host.wait_log("backoff: crashed; restarting in")
    core = copy / "core.py"
    original = core.read_text()

    call = "_on_changes(host, set(message.paths))"
    assert original.count(call) == 1
    write(core, original.replace(call, call.replace("_on_changes", "_on_changez")))  # compiles
    host.wait_for(lambda: "core reloaded" in host.log() or "not applied" in host.log(), "the edit judged")
    assert "core reloaded" not in host.log()
    host.wait_log("handle() uses _on_changez, which core.py does not define")

    assert original.count('"wakeup"]') == 1 and original.count("def wakeup(") == 1
    write(core, original.replace(', "wakeup"]', "]").replace("def wakeup(", "def _next_due("))
    host.wait_log("core.py no longer defines wakeup()")

    write(core, original.replace('restarting in {wait:.2f} s', 'coming back in {wait:.2f} s'))
    host.wait_log("core reloaded (generation 1)")  # the fix gets through
    host.wait_log("backoff: crashed; coming back in")
    assert "internal error" not in host.log() and "core reloaded" not in host.log().split("no longer defines")[0]
    assert host.stop() == 0
