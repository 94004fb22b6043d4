"""Servers that drop no request across reloads: the examples under load while their file is
saved again and again (the real `hotreload run`, clients on loopback)."""
import importlib.util
import random
import time
from collections import Counter

import pytest
from conftest import wait_for, write
from test_examples import copy_example, free_port
from traffic import Traffic

SAVES = 15  # the benchmark (`downtime`) makes 100; here enough to cross many swaps, in ~10 s


def save_versions(traffic, path, old, saves, rng):
    """Save ``path`` ``saves`` times, 100-300 ms apart (the pause is the pace of an editing
    user, not a wait), each time with ``old`` replaced by ``version N``; the texts served, once
    every client has been served the last. A save that comes during a swap waits for it, and
    saves that waited together make one reload: there may be fewer reloads than saves."""
    source = path.read_text()
    versions = [old]
    for n in range(1, saves + 1):
        versions.append(f"version {n}")
        write(path, source.replace(old, versions[-1]))
        time.sleep(rng.uniform(0.1, 0.3))
    wait_for(lambda: all(traffic.bodies(c)[-1:] == [f"{versions[-1]}\n"] for c in traffic.clients()),
             what="every client to be served the newest version")
    return versions


def reloads(host):
    """How many times the worker's code was swapped, from the host's log."""
    return host.log().count("reloaded (generation ")


def check_no_request_dropped(traffic, versions):
    """No request failed; every response is a version that was saved, and no client ever
    got an older version after a newer one; the keep-alive client reused its connections."""
    requests = traffic.snapshot()
    assert traffic.failures == [], traffic.failures[:5]
    order = {text: n for n, text in enumerate(versions)}
    for client in traffic.clients():
        seen = [order[body.strip()] for body in traffic.bodies(client)]
        assert seen == sorted(seen), f"{client} went back to an older version"
        assert seen[-1] == len(versions) - 1 and len(set(seen)) > 1, client
    per_connection = Counter(r.connection for r in requests if r.client == "keep-alive-0")
    assert max(per_connection.values()) >= 3, "the keep-alive client never reused a connection"
    assert len(requests) > 5 * len(versions)


@pytest.mark.timeout(180)
def test_http_server_drops_no_request_while_its_file_is_saved_again_and_again(tmp_path, start_host):
    folder = copy_example("http_server", tmp_path)
    port = free_port()
    host = start_host(folder, env={"HELLO_PORT": str(port)})
    host.wait_log(f"serving on http://127.0.0.1:{port}/")
    with Traffic(port) as traffic:
        wait_for(lambda: len(traffic.snapshot()) > 50, what="the clients to be served")
        versions = save_versions(traffic, folder / "hello.py", "hello from hotreload", SAVES, random.Random(11))
    check_no_request_dropped(traffic, versions)
    assert reloads(host) >= SAVES // 2
    assert host.stop() == 0


@pytest.mark.timeout(180)
def test_the_asgi_example_under_uvicorn_drops_no_request_while_its_file_is_saved_again_and_again(
    tmp_path, start_host
):
    for package in ("uvicorn", "starlette"):
        if importlib.util.find_spec(package) is None:
            pytest.fail(f"{package} is missing: pip install -e '.[test]' installs the examples' packages")
    folder = copy_example("asgi", tmp_path)
    port = free_port()
    host = start_host(folder, env={"ASGI_PORT": str(port)})
    host.wait_log("Application startup complete.")
    with Traffic(port) as traffic:
        wait_for(lambda: len(traffic.snapshot()) > 50, what="the clients to be served")
        versions = save_versions(traffic, folder / "web.py", "hello from hotreload and uvicorn", SAVES,
                                 random.Random(12))
    check_no_request_dropped(traffic, versions)
    assert reloads(host) >= SAVES // 2
    assert host.stop() == 0
    log = host.log()
    assert "Exception in ASGI application" not in log and "raised while stopping" not in log
    assert log.count("| web        | stopped serving") == log.count("| web        | serving on")  # gracefully
    assert "closed what it kept: ('listener', ('127.0.0.1', " in log
