"""hotreload list, hotreload new and the config files."""
import pytest

from conftest import run_cli, worker_source, write
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
