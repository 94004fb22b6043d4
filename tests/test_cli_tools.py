"""hotreload list, hotreload new, the config files, and the command line's edges."""
import json
import os
import subprocess

import pytest

from conftest import HOTRELOAD, private_package, read_terminal, run_cli, worker_source, write
from hotreload import config
from hotreload.settings import Backoff


def test_list_import_checks_every_worker_without_running_it(folder, tmp_path):
    ran = tmp_path / "ran"
    write(folder / "good.py", f"RESTART = 'never'\ndef run(ctx):\n    open({str(ran)!r}, 'w').close()\n")
    write(folder / "_helper.py", "X = 1\n")
    write(folder / "uses.py", "from . import _helper\ndef run(ctx):\n    pass\n")
    result = run_cli("list", str(folder), "--no-entry-points", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["NAME", "KIND", "SETTINGS", "ERROR"]
    assert ["good", "worker", "RESTART='never'"] in rows and ["_helper", "helper"] in rows
    assert not ran.exists()

    write(folder / "broken.py", "def run(ctx):\n    pass\nimport missing_module_xyz\n")
    result = run_cli("list", str(folder), "--no-entry-points", cwd=tmp_path)
    assert result.returncode == 1
    assert ["broken", "worker", "ModuleNotFoundError:", "No", "module", "named", "'missing_module_xyz'"] in [
        line.split() for line in result.stdout.splitlines()]
    assert "broken.py\", line 3" in result.stderr  # the full error, as `run` shows it
    assert result.stdout.splitlines()[-1] == "1 broken: broken"


def test_new_writes_a_worker_that_runs_refuses_to_overwrite_and_rejects_bad_names(folder, tmp_path, start_host):
    result = run_cli("new", "poller", str(folder), cwd=tmp_path)
    assert result.returncode == 0 and (folder / "poller.py").exists()
    source = (folder / "poller.py").read_text()
    assert "ctx.sleep" in source and "ctx.log" in source and "ctx.state" in source
    again = run_cli("new", "poller", str(folder), cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (folder / "poller.py").read_text() == source
    for bad in ("2fast", "class", "my-worker", "_private"):
        result = run_cli("new", bad, str(folder), cwd=tmp_path)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, bad
    host = start_host(folder)
    host.wait_log("| poller     | tick 1")
    assert host.stop() == 0


def test_new_with_a_command_writes_a_program_worker_that_runs(folder, tmp_path, start_host):
    result = run_cli("new", "pinger", str(folder), "--command", "sh -c 'echo pong; sleep 60'", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    source = (folder / "pinger.py").read_text()
    assert "COMMAND = \"sh -c 'echo pong; sleep 60'\"" in source and "def run" not in source
    bad = run_cli("new", "broken", str(folder), "--command", "echo 'unclosed", cwd=tmp_path)
    assert bad.returncode == 2 and "No closing quotation" in bad.stderr and len(bad.stderr.splitlines()) == 1
    assert not (folder / "broken.py").exists()
    host = start_host(folder)
    host.wait_log("| INFO    | pinger     | pong")
    assert host.stop() == 0


def test_config_is_found_upward_and_pyproject_comes_before_setup_cfg(tmp_path):
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert config.find(deep) == config.Config()
    (tmp_path / "setup.cfg").write_text("[hotreload]\nstop-timeout = 2\nreload = false\nbackoff.initial = 1\n")
    found = config.find(deep)
    assert found.path == tmp_path / "setup.cfg"
    assert found.values == {"stop-timeout": 2.0, "reload": False, "backoff": {"initial": 1.0}}
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no [tool.hotreload]: skipped
    assert config.find(deep).path == tmp_path / "setup.cfg"
    (tmp_path / "a" / "pyproject.toml").write_text(
        "[tool.hotreload]\ndebounce = 0.02\nrestart = 'on-failure'\nbackoff = {max = 60}\n")
    found = config.find(deep)
    assert found.path == tmp_path / "a" / "pyproject.toml"
    defaults = config.worker_defaults(found.values)
    assert defaults.restart == "on-failure" and defaults.backoff == Backoff(max=60.0)


@pytest.mark.parametrize("text, message", [
    ("[tool.hotreload]\nstop_timeout = 2\n", "unknown key 'stop_timeout'; allowed keys: dir, stop-timeout"),
    ("[tool.hotreload]\nreload = 'sometimes'\n", "reload must be true or false, not 'sometimes'"),
    ("[tool.hotreload]\nlog-level = 'LOUD'\n", "log-level must be one of TRACE"),
    ("[tool.hotreload]\nbackoff = {initial = -1}\n", "BACKOFF['initial']: must be > 0"),
    ("[tool.hotreload\n", "pyproject.toml"),
    ("[tool.hotreload]\nreload = 'no'\n", "reload must be true or false, not 'no'"),
    ("[tool.hotreload]\nstop-timeout = '10'\n", "stop-timeout must be a number of seconds"),
    ("[tool.hotreload]\nstop-timeout = inf\n", "stop-timeout must be a number of seconds > 0 and <= 86400"),
    ("[tool.hotreload]\nstop-timeout = 1e10\n", "stop-timeout must be a number of seconds > 0 and <= 86400"),
    ("[tool.hotreload]\ndebounce = 100\n", "debounce must be a number of seconds > 0 and <= 10"),
    ("[tool.hotreload]\nbackoff = {initial = '1'}\n", "BACKOFF['initial']: must be a number"),
    ("[tool.hotreload]\ndir = 3\n", "dir must be a string"),
    ("[tool.hotreload]\ncolor = 'sometimes'\n", "color must be one of auto, always, never, not 'sometimes'"),
])
def test_a_bad_config_is_an_error_naming_file_key_and_what_is_allowed(tmp_path, text, message):
    (tmp_path / "pyproject.toml").write_text(text)
    (tmp_path / "workers").mkdir()
    result = run_cli("run", cwd=tmp_path)
    assert result.returncode == 2
    assert str(tmp_path / "pyproject.toml") in result.stderr and message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_command_line_beats_config_file_beats_defaults(folder, tmp_path, start_host):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.hotreload]\nlog-level = 'WARNING'\nreload = false\nrestart = 'never'\n")
    write(folder / "once.py", worker_source(body="return"))
    host = start_host(folder, "--log-level", "INFO")  # the command line wins over the file
    host.wait_log("| once       | exited: returned; RESTART='never'")  # the file's default RESTART
    log = host.log()
    assert "(reload off)" in log  # the file wins over the built-in default
    assert f"defaults from {tmp_path / 'pyproject.toml'}" in log
    assert host.stop() == 0
    undone = run_cli("list", str(folder), "--entry-points", cwd=tmp_path)  # both forms exist
    assert undone.returncode == 0
    again = start_host(folder, "--log-level", "INFO", "--reload")  # the command line undoes the file
    again.wait_log("(reload on)")
    assert again.stop() == 0


@pytest.mark.parametrize("text, message", [
    ("[hotreload]\nreload = maybe\n", "reload must be true or false, not 'maybe'"),
    ("[hotreload]\nstop-timeout = ten\n", "stop-timeout must be a number of seconds > 0 and <= 86400, not 'ten'"),
    ("[hotreload]\ndebounce = nan\n", "debounce must be a number of seconds > 0 and <= 10, not 'nan'"),
    ("[hotreload]\nbackoff.max = lots\n", "BACKOFF['max']: must be a number, not str 'lots'"),
    ("[hotreload]\nbackoff = {}\n", "backoff must be given key by key in setup.cfg (backoff.initial = 1), not '{}'"),
    ("[hotreload]\nbackoff = 1\nbackoff.max = 2\n",
     "backoff must be given key by key in setup.cfg (backoff.initial = 1), not '1'"),
])
def test_setup_cfg_values_are_parsed_strictly(tmp_path, text, message):
    (tmp_path / "setup.cfg").write_text(text)
    with pytest.raises(config.ConfigError) as info:
        config.find(tmp_path)
    assert str(info.value) == f"{tmp_path / 'setup.cfg'} [hotreload]: {message}"


def test_setup_cfg_flags_and_numbers_become_their_types(tmp_path):
    (tmp_path / "setup.cfg").write_text(
        "[hotreload]\nreload = no\nguard = 1\ndebounce = 0.5\nbackoff.fatal_after = 3\n")
    assert config.find(tmp_path).values == {"reload": False, "guard": True, "debounce": 0.5,
                                            "backoff": {"fatal_after": 3.0}}


def test_a_binary_config_file_is_a_one_line_error(tmp_path):
    (tmp_path / "workers").mkdir()
    (tmp_path / "pyproject.toml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    result = run_cli("run", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert f"{tmp_path / 'pyproject.toml'}: not UTF-8 text" in result.stderr


@pytest.mark.parametrize("option", ["--stop-timeout", "--debounce"])
@pytest.mark.parametrize("value", ["1e10", "inf", "0", "-1", "nan"])
def test_durations_on_the_command_line_are_checked_against_their_range(folder, tmp_path, option, value):
    result = run_cli("run", str(folder), "--no-guard", option, value, cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "must be a number of seconds > 0 and <=" in result.stderr and value in result.stderr


def test_dir_in_a_config_file_is_relative_to_that_file_and_named_in_errors(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.hotreload]\ndir = 'services'\n")
    services = tmp_path / "services"
    services.mkdir()
    write(services / "poller.py", worker_source())
    sub = tmp_path / "docs" / "deep"
    sub.mkdir(parents=True)
    result = run_cli("list", "--no-entry-points", cwd=sub)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[:2] == ["poller", "worker"]

    (tmp_path / "pyproject.toml").write_text("[tool.hotreload]\ndir = 'nowhere'\n")
    for command in (["run"], ["list"], ["new", "x"]):
        result = run_cli(*command, cwd=sub)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert str(tmp_path / "nowhere") in result.stderr, result.stderr
        assert f"dir = 'nowhere' in {tmp_path / 'pyproject.toml'}" in result.stderr, result.stderr


@pytest.mark.parametrize("name", ["loguru", "watchdog", "zipp", "json", "__main__"])
def test_a_workers_folder_named_after_an_importable_module_is_refused_and_leaves_nothing(
        tmp_path, runtime_dir, name):
    folder = tmp_path / name
    folder.mkdir()
    write(folder / "poller.py", worker_source())
    for command in (["run", "--no-guard"], ["run"], ["list"]):
        result = run_cli(*command, str(folder), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert f"module {name!r}" in result.stderr and "rename the folder" in result.stderr
        assert result.stdout == ""
    assert [p for p in runtime_dir.rglob("*") if not p.is_dir()] == []


def closed_pipe_run(*args, cwd):
    """``hotreload ARGS`` with its stdout a pipe whose reader has gone, as in ``| head -1``."""
    read, write_end = os.pipe()
    os.close(read)
    try:
        return subprocess.run([str(HOTRELOAD), *args], cwd=cwd, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(write_end)


def test_a_reader_that_went_away_ends_the_command_quietly(folder, tmp_path, start_host):
    write(folder / "poller.py", worker_source())
    host = start_host(folder)
    host.wait_started("poller", 1)
    for args in (["status", "--json", "-d", str(folder)], ["status", "-d", str(folder)],
                 ["list", str(folder)], ["--version"]):
        result = closed_pipe_run(*args, cwd=tmp_path)
        assert (result.returncode, result.stderr) == (141, ""), args
    assert host.stop() == 0


def test_start_of_a_worker_that_cannot_start_exits_1(folder, tmp_path, start_host):
    write(folder / "good.py", worker_source())
    write(folder / "broken.py", worker_source(top="import missing_module_xyz"))
    host = start_host(folder)
    host.wait_started("good", 1)
    host.wait_log("| broken     | fatal:")
    run_cli("stop", "-d", str(folder), "good", cwd=tmp_path)
    host.wait_for(lambda: "good stop 1 1" in host.events(), "good stopped")
    for command in ("start", "restart"):
        result = run_cli(command, "-d", str(folder), "broken", "good", cwd=tmp_path)
        assert result.returncode == 1, (command, result.stdout)
        lines = result.stdout.splitlines()
        assert lines[0].startswith("broken: cannot start: ModuleNotFoundError") and len(lines) == 2
    host.wait_started("good", 1, count=2)
    assert run_cli("start", "-d", str(folder), "good", cwd=tmp_path).returncode == 0  # already running: fine
    assert host.stop() == 0


def test_a_log_file_that_cannot_be_created_is_a_one_line_error(folder, tmp_path):
    (tmp_path / "plain").write_text("a file, not a folder\n")
    for guard in ("--guard", "--no-guard"):
        result = run_cli("run", str(folder), guard, "--log-file", str(tmp_path / "plain" / "host.log"), cwd=tmp_path)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert f"cannot write the log file {tmp_path / 'plain' / 'host.log'}: Not a directory" in result.stderr


def test_a_log_file_on_a_full_disk_is_reported_once_and_the_log_goes_on_to_stderr(folder, start_host):
    write(folder / "chatty.py", worker_source(body="for i in range(200):\n    ctx.log.info(f'line {i}')"))
    host = start_host(folder, "--log-file", "/dev/full")  # every write: ENOSPC
    host.wait_log("| chatty     | line 199")
    log = host.log()
    assert log.count("cannot write the log file /dev/full: No space left on device; "
                     "logging to stderr only from now on") == 1
    assert "Logging error" not in log and "Traceback" not in log
    assert host.stop() == 0


def test_a_deleted_log_file_is_created_again(folder, tmp_path, start_host):
    write(folder / "ticker.py", worker_source(top="import itertools", body="""
        for i in itertools.count():
            ctx.log.info(f"tick {i}")
            if ctx.sleep(0.02):
                break
        """))
    path = tmp_path / "logs" / "host.log"
    host = start_host(folder, "--log-file", str(path))
    host.wait_for(lambda: path.exists() and "| ticker     | tick 1" in path.read_text(), "ticks in the log file")
    path.unlink()
    seen = host.log().count("| ticker     | tick")
    host.wait_log("| ticker     | tick", count=seen + 2)  # logged after the deletion
    host.wait_for(lambda: path.exists() and "| ticker     | tick" in path.read_text(), "a new log file")
    assert host.stop() == 0


def test_the_log_file_is_rotated_keeping_a_few_old_files(tmp_path):
    from hotreload.logfile import LogFile

    path = tmp_path / "host.log"
    sink = LogFile(str(path), rotate_bytes=100, keep=2)
    for number in range(10):
        sink.write(f"{number:02d} {'x' * 36}\n")  # 40 bytes: two a file
    sink.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host.log", "host.log.1", "host.log.2"]
    assert [path.read_text()[:2], (tmp_path / "host.log.1").read_text()[:2],
            (tmp_path / "host.log.2").read_text()[:2]] == ["08", "06", "04"]
    sink.write("10 after a stop: loguru stops a sink it removes, and it may be added again\n")
    sink.stop()
    assert path.read_text().splitlines()[-1].startswith("10 after a stop")


def test_no_color_turns_the_colours_of_run_off(folder, tmp_path):
    write(folder / "poller.py", worker_source())
    assert "\033[" in read_terminal(folder, tmp_path, {"NO_COLOR": ""})  # empty: no effect, as no-color.org says
    assert "\033[" not in read_terminal(folder, tmp_path, {"NO_COLOR": "1"})


def status_of(folder, tmp_path):
    result = run_cli("status", "-d", str(folder), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_status_shows_the_current_problem_of_each_worker_and_clears_it_when_fixed(folder, tmp_path, start_host):
    good = worker_source(1)
    write(folder / "poller.py", good)
    host = start_host(folder)
    host.wait_started("poller", 1)
    reply = status_of(folder, tmp_path)
    assert reply["guardian"] == host.proc.pid and isinstance(reply["pid"], int)

    def last_error():
        return status_of(folder, tmp_path)["workers"][0]["last_error"]

    write(folder / "poller.py", good + "\ndef broken(:\n")
    host.wait_log("not loaded; the previous version keeps running")
    assert last_error().startswith("SyntaxError:")
    write(folder / "poller.py", good)  # the edit undone
    host.wait_log("is back to the code that runs")
    assert last_error() is None

    write(folder / "poller.py", good + "\ndef broken(:\n")
    host.wait_log("not loaded; the previous version keeps running", count=2)
    write(folder / "poller.py", "X = 1\n")
    host.wait_log("no longer defines run(ctx)")
    assert "no longer defines run(ctx)" in last_error()
    write(folder / "poller.py", worker_source(2))
    host.wait_started("poller", 2)
    assert last_error() is None
    assert status_of(folder, tmp_path)["workers"][0]["state"] == "running"
    assert host.stop() == 0


def test_a_deleted_worker_logs_its_stop(folder, start_host):
    write(folder / "gone.py", worker_source())
    host = start_host(folder)
    host.wait_started("gone", 1)
    (folder / "gone.py").unlink()
    log = host.wait_log("| gone       | removed: its file is gone")
    assert "| gone       | stopping" in log and "| gone       | stopped" in log
    assert host.stop() == 0


def test_editing_a_module_only_the_commands_use_needs_no_restart_of_the_host(folder, start_host, tmp_path):
    copy, private = private_package(tmp_path)
    write(folder / "poller.py", worker_source())
    host = start_host(folder, **private)
    host.wait_started("poller", 1)
    for name in ("status.py", "listing.py", "scaffold.py", "settings.py"):  # settings.py: the host uses it
        write(copy / name, (copy / name).read_text() + "\n# edited\n")
    host.wait_log("settings.py changed: only core.py reloads in place; restart hotreload to use it")
    host.barrier()
    assert host.log().count("restart hotreload to use it") == 1
    assert host.stop() == 0
