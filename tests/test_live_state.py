"""Objects in ctx.state follow the new code: class upgrade at the quiescent point of a reload,
and STATE_VERSION / migrate. The real command, on a temp folder."""
import textwrap

from conftest import REPORT_FUNCTION, write

HELPER = """
class Conn:
    SLOTS
    def __init__(self, n):
        self.n = n

    def describe(self):
        return "conn-VERSION"
"""

WORKER = REPORT_FUNCTION + """
from . import _helper


class Client:
    def __init__(self):
        self.pool = [_helper.Conn(n) for n in range(3)]

    def describe(self):
        return "client-VERSION"


def run(ctx):
    client = ctx.state.setdefault("client", Client())
    conn = client.pool[2]
    report(ctx.name, "start", client.describe(), conn.describe(), isinstance(client, Client),
           isinstance(conn, _helper.Conn), id(client))
    ctx.sleep(float("inf"))
"""


def helper(version, slots=""):
    return textwrap.dedent(HELPER).replace("VERSION", str(version)).replace("SLOTS", slots or "pass")


def worker(version):
    return WORKER.replace("VERSION", str(version))


def starts(host, name="svc"):
    return [line.split()[2:] for line in host.events(name) if line.split()[1] == "start"]


def wait_starts(host, count, name="svc"):
    host.wait_for(lambda: len(starts(host, name)) >= count, f"{count} starts of {name}")
    return starts(host, name)


def test_objects_from_the_worker_and_its_helper_follow_each_edit(folder, start_host):
    write(folder / "_helper.py", helper(1))
    write(folder / "svc.py", worker(1))
    host = start_host(folder)
    [first] = wait_starts(host, 1)
    assert first[:4] == ["client-1", "conn-1", "True", "True"]
    write(folder / "svc.py", worker(2))  # a method of the worker's own class
    assert wait_starts(host, 2)[1] == ["client-2", "conn-1", "True", "True", first[4]]
    write(folder / "_helper.py", helper(2))  # a method of the helper's class
    assert wait_starts(host, 3)[2] == ["client-2", "conn-2", "True", "True", first[4]]
    assert "keeps its old class" not in host.log()
    assert host.stop() == 0


TOKEN = """
import enum


class Token:
    pass


class Mode(enum.Enum):
    FAST = 1
"""


def test_what_cannot_move_is_named_and_left_whole(folder, start_host):
    write(folder / "_helper.py", helper(1, slots='__slots__ = ("n",)') + TOKEN)
    write(folder / "svc.py", worker(1).replace(
        "    conn = client.pool[2]",
        '    ctx.state.setdefault("token", [_helper.Token()])\n'
        '    ctx.state.setdefault("mode", _helper.Mode.FAST)\n'
        "    conn = client.pool[2]"))
    host = start_host(folder)
    wait_starts(host, 1)
    dropped = TOKEN.replace("class Token", "class Other")
    write(folder / "_helper.py", helper(2, slots='__slots__ = ("n", "peer")') + dropped)
    log = host.wait_log("keeps its old class", 3)
    assert ("state['client'].pool[0] keeps its old class workers._helper.Conn (and 2 more of that class): "
            "its __slots__ changed (('n',) -> ('n', 'peer'))") in log
    assert ("state['token'][0] keeps its old class workers._helper.Token: "
            "the new workers._helper no longer defines Token") in log
    assert "state['mode'] keeps its old class workers._helper.Mode: an Enum member cannot change class" in log
    # the client moved; its connections kept their class and their old code, whole
    assert wait_starts(host, 2)[1][:4] == ["client-1", "conn-1", "True", "False"]
    assert host.stop() == 0


MIGRATING = REPORT_FUNCTION + """
STATE_VERSION = @VERSION@


class Tally:
    def __init__(self):
        self.items = [1, 2, 3]

    def describe(self):
        return "tally-@CODE@"


def migrate(state, old_version):
    report("svc", "migrate", old_version, type(state["tally"]) is Tally)
    @MIGRATE@
    return state


def run(ctx):
    tally = ctx.state.setdefault("tally", Tally())
    report(ctx.name, "start", STATE_VERSION, tally.describe(), len(tally.items), isinstance(tally, Tally))
    ctx.sleep(float("inf"))
"""


def migrating(version, code=1, body="pass"):
    source = MIGRATING.replace("@VERSION@", str(version)).replace("@CODE@", str(code))
    return source.replace("@MIGRATE@", body)


def migrations(host):
    return [line.split()[2:] for line in host.events("svc") if line.split()[1] == "migrate"]


def test_migrate_runs_once_per_version_change_then_the_class_upgrade(folder, start_host):
    write(folder / "svc.py", migrating(1))
    host = start_host(folder)
    wait_starts(host, 1)
    write(folder / "svc.py", migrating(1, code=2))  # the same version: no migrate
    assert wait_starts(host, 2)[1] == ["1", "tally-2", "3", "True"]
    # a new version: migrate gets the objects of the old class, then they move to the new
    write(folder / "svc.py", migrating(2, code=3, body='state["tally"].items.append(4)'))
    assert wait_starts(host, 3)[2] == ["2", "tally-3", "4", "True"]
    write(folder / "svc.py", migrating(2, code=4, body='state["tally"].items.append(4)'))
    assert wait_starts(host, 4)[3] == ["2", "tally-4", "4", "True"]
    write(folder / "svc.py", migrating(3, code=5))
    assert wait_starts(host, 5)[4] == ["3", "tally-5", "4", "True"]
    assert migrations(host) == [["1", "False"], ["2", "False"]]
    assert "migrated ctx.state from STATE_VERSION 1 to 2" in host.log()
    assert host.stop() == 0


def test_a_failed_migrate_rolls_the_reload_back_with_the_state_untouched(folder, start_host):
    write(folder / "svc.py", migrating(1))
    host = start_host(folder)
    wait_starts(host, 1)
    write(folder / "svc.py", migrating(2, code=2, body='state["tally"].items.clear()\n    raise KeyError("no total")'))
    log = host.wait_log("not reloaded")
    assert "KeyError: 'no total'" in log and 'svc.py", line 23' in log
    # the previous version resumes, on the state it had: migrate only ever saw a copy
    assert wait_starts(host, 2)[1] == ["1", "tally-1", "3", "True"]
    write(folder / "svc.py", migrating(2, code=3))  # fixed: it runs, once
    assert wait_starts(host, 3)[2] == ["2", "tally-3", "3", "True"]
    assert migrations(host) == [["1", "False"]] * 2
    assert host.stop() == 0


def test_a_version_change_without_migrate_is_refused(folder, start_host):
    write(folder / "svc.py", migrating(1))
    host = start_host(folder)
    wait_starts(host, 1)
    write(folder / "svc.py", migrating(2, code=2).replace("def migrate(", "def not_migrate("))
    log = host.wait_log("not reloaded")
    assert "svc.py:9: STATE_VERSION changed from 1 to 2, and no migrate(state, old_version) is defined" in log
    assert wait_starts(host, 2)[1][:2] == ["1", "tally-1"]
    assert host.stop() == 0


def test_a_state_that_cannot_be_copied_for_migrate_is_refused(folder, start_host):
    source = migrating(1).replace('ctx.state.setdefault("tally", Tally())',
                                  'ctx.state.setdefault("tally", Tally())\n    ctx.state["lock"] = _threading.Lock()')
    source = "import threading as _threading\n" + source
    write(folder / "svc.py", source)
    host = start_host(folder)
    wait_starts(host, 1)
    write(folder / "svc.py", source.replace("STATE_VERSION = 1", "STATE_VERSION = 2"))
    log = host.wait_log("not reloaded")
    assert "the state cannot be copied: TypeError: cannot pickle '_thread.lock' object" in log
    assert wait_starts(host, 2)[1][:2] == ["1", "tally-1"]
    assert migrations(host) == []
    assert host.stop() == 0


def test_a_worker_that_comes_back_gets_its_state_migrated(folder, start_host):
    write(folder / "svc.py", migrating(1))
    host = start_host(folder)
    wait_starts(host, 1)
    (folder / "svc.py").unlink()
    host.wait_log("removed: its file is gone")
    write(folder / "svc.py", migrating(2, code=2, body='state["tally"].items.append(4)'))
    assert wait_starts(host, 2)[1] == ["2", "tally-2", "4", "True"]
    assert migrations(host) == [["1", "False"]]
    assert host.stop() == 0
