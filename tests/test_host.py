"""The worker host, end to end: the real `hotreload run` in a subprocess on a temp folder."""
import json
import signal
import time

import pytest

from conftest import run_cli, worker_source, write
from hotreload.signals import DUPLICATE_WINDOW


def test_crash_is_logged_once_with_its_traceback_and_restarted_with_state_kept(folder, start_host):
    write(folder / "flaky.py", worker_source(body="raise RuntimeError('lost the database')",
                                              BACKOFF={"initial": 0.05, "max": 0.2}))
    host = start_host(folder)
    host.wait_for(lambda: len(host.starts("flaky")) >= 3, "three starts")
    log = host.log()
    assert 'flaky.py", line' in log and "RuntimeError: lost the database" in log
    assert "| flaky      | crashed after" in log
    assert "| flaky      | backoff: crashed; restarting in" in log
    # ctx.state survives restarts: the start counter kept counting
    assert [int(line.split()[3]) for line in host.events("flaky") if " start " in line][:3] == [1, 2, 3]
    assert host.stop() == 0


def test_a_crash_loop_goes_fatal_after_fatal_after_failures(folder, start_host):
    write(folder / "doomed.py", worker_source(body="raise RuntimeError('always')",
                                               BACKOFF={"initial": 0.01, "max": 0.05, "fatal_after": 3}))
    write(folder / "healthy.py", worker_source())
    host = start_host(folder)
    host.wait_log("| doomed     | fatal: crashed 3 times in a row")
    host.barrier()  # later events are handled after the fatal state
    assert len(host.starts("doomed")) == 3
    assert host.log().count("RuntimeError: always") == 3
    assert host.starts("healthy") == [1]
    assert host.stop() == 0


def test_restart_policies(folder, start_host):
    fast = {"initial": 0.01, "max": 0.02, "fatal_after": 1000}
    write(folder / "always_returns.py", worker_source(body="return", BACKOFF=fast))
    write(folder / "onfail_returns.py", worker_source(body="return", RESTART="on-failure", BACKOFF=fast))
    write(folder / "onfail_crashes.py", worker_source(body="raise ValueError", RESTART="on-failure", BACKOFF=fast))
    write(folder / "never_crashes.py", worker_source(body="raise ValueError", RESTART="never", BACKOFF=fast))
    host = start_host(folder)
    host.wait_for(lambda: len(host.starts("always_returns")) >= 3, "a returning worker restarted")
    host.wait_for(lambda: len(host.starts("onfail_crashes")) >= 3, "a crashing on-failure worker restarted")
    host.wait_log("| onfail_returns | exited: returned; RESTART='on-failure', not restarting")
    host.wait_log("| never_crashes | exited: crashed; RESTART='never', not restarting")
    host.barrier()
    assert len(host.starts("onfail_returns")) == 1 and len(host.starts("never_crashes")) == 1
    assert host.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_stop_every_worker_running_finally_blocks_and_exit_0(folder, start_host, sig):
    for name in ("a", "b"):
        write(folder / f"{name}.py", worker_source())
    host = start_host(folder)
    host.wait_started("a", 1)
    host.wait_started("b", 1)
    assert host.stop(sig) == 0
    assert host.events("a")[-1] == "a stop 1 1" and host.events("b")[-1] == "b stop 1 1"
    assert f"stopping on {sig.name}" in host.log()


def test_an_async_worker_is_cancelled_on_stop(folder, start_host):
    write(folder / "aio.py", worker_source(top='''
        import asyncio

        async def serve(ctx):
            report(ctx.name, "async-start")
            try:
                await asyncio.sleep(3600)
            finally:
                report(ctx.name, "async-finally")
        ''', body="return serve(ctx)"))
    host = start_host(folder)
    host.wait_for(lambda: "aio async-start" in host.events(), "the async worker")
    assert host.stop() == 0
    assert "aio async-finally" in host.events()


def test_a_broken_module_at_start_is_reported_and_the_others_run(folder, start_host):
    write(folder / "syntax.py", "def run(ctx)\n    pass\n")
    write(folder / "importerr.py", "import no_such_module_here\n\ndef run(ctx):\n    pass\n")
    write(folder / "raises.py", "X = 1\nraise RuntimeError('at import time')\n")
    write(folder / "badsetting.py", "def run(ctx):\n    pass\n\nRESTART = 'sometimes'\n")
    write(folder / "helperish.py", "X = 1\n")
    write(folder / "good.py", worker_source())
    host = start_host(folder)
    host.wait_started("good", 1)
    log = host.wait_log("treated as a helper")
    assert 'syntax.py", line 1' in log and "SyntaxError" in log
    assert 'importerr.py", line 1' in log and "No module named 'no_such_module_here'" in log
    assert 'raises.py", line 2' in log and "RuntimeError: at import time" in log
    assert "badsetting.py:4: RESTART: must be one of" in log
    assert "helperish.py defines no run(ctx): treated as a helper" in log
    assert "| syntax     | fatal" in log
    assert host.proc.poll() is None
    assert host.stop() == 0


def test_a_worker_that_ignores_stop_is_interrupted_and_the_exit_status_says_so(folder, start_host):
    write(folder / "stubborn.py", worker_source(body='''
        while True:
            ctx.sleep(0.05)  # ignores the answer
        '''))
    host = start_host(folder, "--stop-timeout", "0.5")
    host.wait_started("stubborn", 1)
    assert host.stop(timeout=0.5 + 2 + 1) == 1
    assert "did not stop within 0.5 s; interrupting it" in host.log()
    assert "stubborn stop 1 1" in host.events()  # Interrupted ran its finally block


def test_a_worker_that_survives_the_interrupt_is_reported_with_its_stack(folder, start_host):
    # Interrupted is raised once, at any bytecode: the outer try catches it where the
    # inner one is not in force (in its handler, or at the inner loop's jump).
    write(folder / "immortal.py", worker_source(body='''
        while True:
            try:
                while True:
                    try:
                        ctx.sleep(0.05)
                    except BaseException:
                        pass
            except BaseException:
                pass
        '''))
    write(folder / "polite.py", worker_source())
    host = start_host(folder, "--stop-timeout", "0.5")
    host.wait_started("immortal", 1)
    host.wait_started("polite", 1)
    assert host.stop(timeout=0.5 + 2 + 1) == 1
    log = host.log()
    assert "still running after being interrupted; giving up on it. It is at:" in log
    assert 'immortal.py", line' in log
    assert "polite stop 1 1" in host.events()


def test_a_second_ctrl_c_exits_at_once(folder, start_host):
    write(folder / "slow.py", worker_source(body="while True:\n    ctx.sleep(0.05)", STOP_TIMEOUT=60))
    host = start_host(folder)
    host.wait_started("slow", 1)
    host.proc.send_signal(signal.SIGINT)
    host.wait_log("stopping on SIGINT")
    # A person's second Ctrl-C, not the first delivered twice: it comes later than the window
    # after the one the host logged (and so after the one it handled).
    time.sleep(DUPLICATE_WINDOW)
    assert host.stop(signal.SIGINT, timeout=5) == 128 + signal.SIGINT
    assert "SIGINT again: exiting now" in host.log()


def test_stdlib_logging_is_routed_with_the_workers_name_and_json_and_file_logs(folder, start_host, tmp_path):
    write(folder / "chatty.py", worker_source(top="import logging", body='''
        logging.getLogger("lib").warning("from stdlib %s", 42)
        ctx.log.info("from loguru")
        '''))
    host = start_host(folder, "--log-json", "--log-file", str(tmp_path / "host.log"))
    host.wait_started("chatty", 1)
    host.wait_log("from loguru")
    lines = [json.loads(line) for line in host.log().splitlines()]
    routed = [line for line in lines if line["message"] == "lib: from stdlib 42"]
    assert len(routed) == 1 and routed[0]["worker"] == "chatty" and routed[0]["level"] == "WARNING"
    assert host.stop() == 0
    assert '"worker": "chatty", "message": "lib: from stdlib 42"' in (tmp_path / "host.log").read_text()


def test_start_summary_lists_workers_with_their_non_default_settings(folder, start_host):
    write(folder / "custom.py", worker_source(RESTART="never", STOP_TIMEOUT=2.0))
    write(folder / "_helper.py", "X = 1\n")
    write(folder / "plain.py", worker_source(top="from . import _helper"))
    host = start_host(folder)
    host.wait_started("plain", 1)
    log = host.log()
    assert "2 worker(s) in" in log
    assert "custom  workers/custom.py  RESTART='never' STOP_TIMEOUT=2.0" in log
    assert "plain   workers/plain.py\n" in log and "helpers: _helper" in log
    assert host.stop() == 0


def test_entry_point_workers_run_unless_turned_off(folder, start_host, tmp_path):
    site = tmp_path / "site"
    (site / "epdemo").mkdir(parents=True)
    (site / "epdemo" / "__init__.py").write_text("")
    (site / "epdemo" / "service.py").write_text(worker_source(RESTART="never"))
    dist = site / "epdemo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: epdemo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[hotreload.workers]\nfromplugin = epdemo.service:run\n")
    env = {"PYTHONPATH": str(site)}
    host = start_host(folder, env=env)
    host.wait_started("fromplugin", 1)
    assert "entry point fromplugin = epdemo.service:run  RESTART='never'" in host.log()
    assert host.stop() == 0
    host = start_host(folder, "--no-entry-points", env=env)
    host.wait_log("0 worker(s) in")
    assert host.stop() == 0
    assert len(host.starts("fromplugin")) == 1


def test_cli_errors_are_one_line_and_exit_2(tmp_path):
    for args in (["run", "missing"], ["run", "--stop-timeout", "soon"], ["frobnicate"], ["run", "--bogus"]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2, args
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "workers folder 'missing' does not exist" in run_cli("run", "missing", cwd=tmp_path).stderr
    (tmp_path / "my-workers").mkdir()
    assert "must be a Python identifier" in run_cli("run", "my-workers", cwd=tmp_path).stderr


def test_version_is_read_beside_the_package_when_installed_there(tmp_path):
    from hotreload.cli import _version

    (tmp_path / "hotreload-9.8.7.dist-info").mkdir()
    (tmp_path / "hotreload-9.8.7.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: hotreload\nVersion: 9.8.7\nSummary: x\n")
    assert _version(tmp_path) == "9.8.7"
    (tmp_path / "hotreload-1.0.dist-info").mkdir()  # two: ambiguous, ask importlib-metadata
    (tmp_path / "hotreload-1.0.dist-info" / "METADATA").write_text("Version: 1.0\n")
    import importlib_metadata

    assert _version(tmp_path) == importlib_metadata.version("hotreload")


def test_version_is_read_from_an_egg_info_first_on_the_path(tmp_path, monkeypatch):
    """``python -m`` puts the current folder first on sys.path, and ``pip install -e .`` leaves
    hotreload.egg-info there: its metadata is in PKG-INFO, not METADATA."""
    from hotreload.cli import _version

    (tmp_path / "eggs" / "hotreload.egg-info").mkdir(parents=True)
    (tmp_path / "eggs" / "hotreload.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 2.1\nName: hotreload\nVersion: 9.8.7\nSummary: x\n")
    monkeypatch.syspath_prepend(str(tmp_path / "eggs"))
    (tmp_path / "site").mkdir()  # no dist-info beside the package: ask importlib-metadata
    assert _version(tmp_path / "site") == "9.8.7"


def test_version_of_a_legacy_egg_info_file_is_read_from_its_metadata(tmp_path, monkeypatch):
    """An old ``setup.py install`` wrote the egg-info as one file: no METADATA or PKG-INFO in it."""
    from hotreload.cli import _version

    (tmp_path / "eggs").mkdir()
    (tmp_path / "eggs" / "hotreload-9.8.7-py3.9.egg-info").write_text(
        "Metadata-Version: 1.0\nName: hotreload\nVersion: 9.8.7\nSummary: x\n")
    monkeypatch.syspath_prepend(str(tmp_path / "eggs"))
    (tmp_path / "site").mkdir()
    assert _version(tmp_path / "site") == "9.8.7"


def test_version_and_help(tmp_path):
    import importlib_metadata

    version = run_cli("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout == f"hotreload {importlib_metadata.version('hotreload')}\n"
    helptext = run_cli("run", "--help", cwd=tmp_path).stdout
    for option in ("--stop-timeout", "--log-level", "--log-json", "--log-file", "--no-entry-points",
                   "--no-reload", "--debounce", "RESTART", "BACKOFF", "STOP_TIMEOUT"):
        assert option in helptext
    assert "run(ctx)" in run_cli("--help", cwd=tmp_path).stdout


def test_the_default_folder_is_workers_in_the_current_directory(folder, start_host):
    assert folder.name == "workers"
    write(folder / "once.py", worker_source(RESTART="never", body="return"))
    host = start_host(folder, omit_dir=True)  # run from folder's parent, with no DIR
    host.wait_for(lambda: "once stop 1 1" in host.events(), "the worker in ./workers to run")
    assert host.stop() == 0


def test_a_signal_while_the_host_is_starting_leads_to_the_same_clean_exit(folder, start_host):
    write(folder / "aaa.py", worker_source())
    write(folder / "slow.py", worker_source(top='''
        import time
        report("slow", "importing")
        time.sleep(0.5)
        '''))
    host = start_host(folder)
    host.wait_for(lambda: "slow importing" in host.events(), "the slow import")
    assert host.stop() == 0
    for name in ("aaa", "slow"):
        events = host.events(name)
        assert len(host.starts(name)) == sum(e.startswith(f"{name} stop") for e in events), events


def test_ctx_stopping_turns_true_when_asked_to_stop(folder, start_host):
    write(folder / "poller.py", worker_source(body='''
        import time
        while not ctx.stopping:
            time.sleep(0.01)
        report(ctx.name, "saw-stopping")
        '''))
    host = start_host(folder)
    host.wait_started("poller", 1)
    assert host.stop() == 0
    assert "poller saw-stopping" in host.events()


def test_a_non_daemon_thread_left_behind_by_a_worker_does_not_hang_the_exit(folder, start_host):
    write(folder / "leaky.py", worker_source(top="import threading, time", body='''
        threading.Thread(target=lambda: time.sleep(3600), name="forgotten", daemon=False).start()
        '''))
    host = start_host(folder)
    host.wait_started("leaky", 1)
    assert host.stop(timeout=10) == 0
    assert "threads started by workers are still running: 'forgotten'; exiting without them" in host.log()


def test_files_others_can_write_are_warned_about_and_symlinks_out_of_the_folder_are_not_imported(
    folder, start_host, tmp_path
):
    write(folder / "alpha.py", worker_source())
    (folder / "alpha.py").chmod(0o666)
    marker = tmp_path / "outside-ran"
    outside = tmp_path / "outside.py"
    outside.write_text(f"open({str(marker)!r}, 'w').close()\ndef run(ctx):\n    pass\n")
    (folder / "sneaky.py").symlink_to(outside)
    (folder / "_stolen.py").symlink_to(outside)
    write(folder / "borrower.py", worker_source(top="from . import _stolen"))
    host = start_host(folder)
    log = host.wait_log(f"\nFix: chmod -R go-w {folder}\n")  # the warning's last line: all of it is there
    assert "SECURITY: writable by other users" in log and f"{folder / 'alpha.py'} (everyone)" in log
    assert f"skipping {folder / 'sneaky.py'}: a symlink to {outside}, outside the folder" in log
    assert "outside the workers folder: not imported" in log  # borrower's helper
    assert not marker.exists()
    host.wait_started("alpha", 1)
    assert host.stop() == 0
