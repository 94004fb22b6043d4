"""Servers that drop no request across reloads: the examples under load while their file is
saved again and again (the real `hotreload run`, clients on loopback)."""
import random
import time

import pytest
from conftest import wait_for, write
from test_examples import copy_example, free_port
from traffic import Traffic

SAVES = 15  # the benchmark (`downtime`) makes 100; here enough to cross many swaps, in ~10 s


def save_versions(host, path, old, saves, rng):
    """Save ``path`` ``saves`` times, 100-300 ms apart (the pause is the pace of an editing
    user, not a wait), each time with ``old`` replaced by ``version N``; the texts served."""
    source = path.read_text()
    versions = [old]
    for n in range(1, saves + 1):
        versions.append(f"version {n}")
        write(path, source.replace(old, versions[-1]))
        time.sleep(rng.uniform(0.1, 0.3))
    host.wait_log(f"reloaded (generation {saves})")
    return versions


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
    keep_alive = [r for r in requests if r.client == "keep-alive-0"]
    assert len(keep_alive) > 2 * keep_alive[-1].connection, "the keep-alive client hardly reused a connection"
    assert len(requests) > 20 * len(versions)


@pytest.mark.timeout(180)
def test_http_server_drops_no_request_while_its_file_is_saved_again_and_again(tmp_path, start_host):
    folder = copy_example("http_server", tmp_path)
    port = free_port()
    host = start_host(folder, env={"HELLO_PORT": str(port)})
    host.wait_log(f"serving on http://127.0.0.1:{port}/")
    with Traffic(port) as traffic:
        wait_for(lambda: len(traffic.snapshot()) > 50, what="the clients to be served")
        versions = save_versions(host, folder / "hello.py", "hello from hotreload", SAVES, random.Random(11))
        wait_for(lambda: all(traffic.bodies(c)[-1:] == [f"{versions[-1]}\n"] for c in traffic.clients()),
                 what="every client to get the newest version")
    check_no_request_dropped(traffic, versions)
    assert host.stop() == 0
