"""Start order among workers (AFTER), as pure functions of the graph: no threads, no files."""
from hotreload import order

AFTERS = {"db": (), "cache": (), "api": ("db", "cache"), "web": ("api",), "other": ()}
KNOWN = set(AFTERS)


def test_a_worker_whose_after_names_known_workers_without_a_cycle_has_no_problem():
    for name, after in AFTERS.items():
        assert order.problem(name, after, AFTERS, KNOWN) is None


def test_unknown_names_are_a_problem_naming_them():
    assert order.problem("api", ("db", "dbx", "queue"), AFTERS, KNOWN) == "no worker named dbx, queue"


def test_a_cycle_is_a_problem_naming_the_workers_along_it():
    afters = {**AFTERS, "db": ("web",)}
    assert order.problem("db", ("web",), afters, KNOWN) == "a cycle: db -> web -> api -> db"
    assert order.problem("api", afters["api"], afters, KNOWN) == "a cycle: api -> db -> web -> api"
    assert order.problem("self", ("self",), {"self": ("self",)}, {"self"}) == "a cycle: self -> self"


def test_a_worker_that_only_leads_into_a_cycle_is_not_on_it_and_waits():
    afters = {"a": ("b",), "b": ("a",), "c": ("a",)}
    assert order.problem("c", ("a",), afters, set(afters)) is None


def test_the_after_given_replaces_the_one_in_the_graph():
    """A reload checks the new AFTER against everyone else's current one."""
    assert order.problem("db", ("web",), AFTERS, KNOWN) == "a cycle: db -> web -> api -> db"
    assert order.problem("api", (), {**AFTERS, "db": ("api",)}, KNOWN) is None


def test_waiting_for_lists_the_workers_not_ready_in_after_order():
    assert order.waiting_for(("db", "cache"), {"cache"}) == ["db"]
    assert order.waiting_for(("db", "cache"), set()) == ["db", "cache"]
    assert order.waiting_for(("db", "cache"), {"db", "cache"}) == []


def test_dependents_are_the_workers_after_the_named_ones_transitively():
    assert order.dependents(AFTERS, ["db"]) == {"api", "web"}
    assert order.dependents(AFTERS, ["web"]) == set()
    assert order.dependents({"a": ("b",), "b": ("a",)}, ["a"]) == {"b"}  # a cycle ends


def test_a_worker_stops_once_no_worker_after_it_runs():
    queue = set(AFTERS)
    everyone = set(AFTERS)
    assert order.stoppable(queue, AFTERS, everyone) == ["other", "web"]
    assert order.stoppable(queue - {"other", "web"}, AFTERS, everyone - {"other", "web"}) == ["api"]
    assert order.stoppable({"db", "cache"}, AFTERS, {"db", "cache"}) == ["cache", "db"]


def test_a_worker_after_it_that_still_runs_holds_it_even_once_asked_to_stop():
    assert order.stoppable({"db"}, AFTERS, {"db", "api"}) == []


def test_workers_that_only_hold_each_other_in_a_cycle_all_stop():
    afters = {"a": ("b",), "b": ("a",), "c": ("a",)}
    assert order.stoppable({"a", "b"}, afters, {"a", "b"}) == ["a", "b"]
    assert order.stoppable({"a", "b", "c"}, afters, {"a", "b", "c"}) == ["c"]


def test_dependencies_first_puts_each_worker_after_those_it_names_even_through_others():
    assert order.dependencies_first(["web", "api", "other", "db"], AFTERS) == ["db", "api", "other", "web"]
    assert order.dependencies_first(["web", "db"], AFTERS) == ["db", "web"]  # through api, not listed
    assert order.dependencies_first(["b", "a"], {"a": ("b",), "b": ("a",)}) == ["b", "a"]  # a cycle: still each once
