"""examples/kubernetes: the manifest asks what the host serves, and the image's command, run
here as a plain process on loopback, answers the probes and stops within the grace period."""
from __future__ import annotations

import ast
import json
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import HOTRELOAD, wait_for

from hotreload import web

pytestmark = pytest.mark.timeout(90)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "kubernetes"
INTERRUPT_AND_REPORT = 2.0  # seconds past a STOP_TIMEOUT within which the host exits (README, Stopping)


def entry_command() -> list[str]:
    """The Dockerfile's CMD, in its exec (JSON) form."""
    line = next(line for line in (EXAMPLE / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    return json.loads(line[len("CMD "):])


def container() -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment's pod spec and its one container."""
    manifest = yaml.safe_load((EXAMPLE / "deployment.yaml").read_text())
    assert manifest["kind"] == "Deployment"
    pod = manifest["spec"]["template"]
    (only,) = pod["spec"]["containers"]
    return pod, only


def longest_stop_timeout() -> float:
    """The longest STOP_TIMEOUT of the example's workers (5 s, the default, where none is set)."""
    timeouts = [5.0]
    for path in (EXAMPLE / "workers").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "STOP_TIMEOUT" for t in node.targets):
                timeouts.append(float(ast.literal_eval(node.value)))
    return max(timeouts)


def test_the_image_runs_hotreload_for_production_as_a_non_root_user():
    text = (EXAMPLE / "Dockerfile").read_text()
    assert re.search(r"^FROM python:[\d.]+-slim$", text, re.M)
    assert re.search(r"^USER (?!root|0\b)\S+$", text, re.M)
    assert entry_command() == ["hotreload", "run", "--no-reload", "--no-guard", "--http", "0.0.0.0:8377"]


def test_the_manifest_probes_and_scrapes_what_the_host_serves_on_its_port():
    pod, spec = container()
    port = int(entry_command()[-1].rpartition(":")[2])
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert port in ports.values()
    probes = {kind: spec[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz" and probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert ports.get(probe["port"], probe["port"]) == port
        assert probe["path"] in web.READ_ONLY  # served without a token
        assert web.route("GET", probe["path"]).kind == probe["path"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics" and "/metrics" in web.READ_ONLY
    assert spec["livenessProbe"]["timeoutSeconds"] > web.LIVENESS_TIMEOUT
    assert {"cpu", "memory"} <= set(spec["resources"]["requests"])
    assert pod["spec"]["terminationGracePeriodSeconds"] > longest_stop_timeout() + INTERRUPT_AND_REPORT


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def test_the_entry_command_answers_the_probes_and_stops_on_sigterm_within_the_grace_period(tmp_path):
    """The image's command as a plain process in a copy of its /app, on loopback and a free
    port instead of 0.0.0.0:8377 (tests stay on loopback)."""
    shutil.copytree(EXAMPLE / "workers", tmp_path / "workers")
    command = [str(HOTRELOAD) if word == "hotreload" else "127.0.0.1:0" if word == "0.0.0.0:8377" else word
               for word in entry_command()]
    log = tmp_path / "stderr.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        found = wait_for(lambda: re.search(r"http on 127\.0\.0\.1:(\d+)", log.read_text()), 20, "the http line")
        port = int(found[1])
        wait_for(lambda: get(port, "/readyz")[0] == 200, 20, "/readyz to answer 200")
        assert get(port, "/healthz")[0] == 200
        code, metrics = get(port, "/metrics")
        assert code == 200 and b'hotreload_worker_up{worker="greeter"} 1.0' in metrics
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        grace = container()[0]["spec"]["terminationGracePeriodSeconds"]
        assert proc.wait(grace) == 0, log.read_text()
        assert time.monotonic() - started < grace
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
