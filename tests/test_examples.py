"""The bundled examples and demo run as their READMEs say."""
import socket
import urllib.request
from pathlib import Path

from conftest import write

ROOT = Path(__file__).resolve().parent.parent


def copy_folder(source_folder, tmp_path):
    folder = tmp_path / source_folder.name
    folder.mkdir()
    for source in source_folder.glob("*.py"):
        write(folder / source.name, source.read_text())
    return folder


def copy_example(name, tmp_path):
    return copy_folder(ROOT / "examples" / name, tmp_path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return response.read().decode()


def test_http_server_serves_reloads_its_greeting_and_shuts_down_cleanly(tmp_path, start_host):
    folder = copy_example("http_server", tmp_path)
    port = free_port()
    host = start_host(folder, env={"HELLO_PORT": str(port)})
    host.wait_log(f"serving on http://127.0.0.1:{port}/")
    assert get(port) == "hello from hotreload\n"
    source = (folder / "hello.py").read_text()
    write(folder / "hello.py", source.replace("hello from hotreload", "hello again"))
    host.wait_log(f"serving on http://127.0.0.1:{port}/", count=2)  # the new version bound the port
    assert get(port) == "hello again\n"
    assert host.stop() == 0
    assert host.log().count("stopped serving") == 2


def test_ticker_ticks_and_keeps_counting_across_a_reload(tmp_path, start_host):
    folder = copy_example("ticker", tmp_path)
    host = start_host(folder)
    host.wait_log("tick 1 at")
    source = (folder / "clock.py").read_text()
    write(folder / "clock.py", source.replace("at {time.strftime(FORMAT)}", "(new) at {time.strftime(FORMAT)}"))
    host.wait_log("reloaded (generation 1)")
    log = host.wait_log("(new) at")
    count = int(log.split("(new) at")[0].rsplit("tick ", 1)[1])
    assert count >= 2
    assert host.stop() == 0


def test_crasher_backs_off_and_a_fix_brings_it_back(tmp_path, start_host):
    folder = copy_example("crasher", tmp_path)
    write(folder / "flaky.py", (folder / "flaky.py").read_text().replace("FAILURE_RATE = 0.8", "FAILURE_RATE = 1"))
    host = start_host(folder)
    host.wait_log("backoff: crashed; restarting in", count=2)
    assert "ConnectionError: the upstream service went away" in host.log()
    write(folder / "flaky.py", (folder / "flaky.py").read_text().replace("FAILURE_RATE = 1", "FAILURE_RATE = 0"))
    host.wait_log("working")
    assert host.stop() == 0


def test_the_bundled_demo_runs(tmp_path, start_host):
    host = start_host(copy_folder(ROOT / "workers", tmp_path))
    host.wait_log("| ticker     | tick 1")
    assert host.stop() == 0


def test_ci_runs_the_readme_test_command_and_the_readme_starts_with_both_commands():
    first_lines = (ROOT / "README.md").read_text().splitlines()[:5]
    assert any(line.endswith("pip install -e . && hotreload run") for line in first_lines)
    assert any(line.endswith("pip install -e '.[test]' && pytest") for line in first_lines)
    assert 'grep -m1 -E "&& pytest$" README.md' in (ROOT / ".ci" / "run").read_text()
