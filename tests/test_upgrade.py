"""Moving the objects of a worker's ctx.state to the new classes of reloaded modules, and
migrating a state between STATE_VERSIONs. Pure: old and new classes are made by exec'ing two
versions of a source into one fresh module object, as ``importlib.reload`` does."""
from __future__ import annotations

import sys
import textwrap
import types

import pytest

from hotreload import upgrade


BEFORE: dict = {}  # each module's namespace before its last reload, by module


@pytest.fixture
def module(monkeypatch: pytest.MonkeyPatch):
    """``module(source)`` execs ``source`` into a fresh module named ``workers._helper`` and
    returns it; called again, execs the new source into the same module, as
    ``importlib.reload`` does (names the new source drops stay), its namespace before kept."""
    made = types.ModuleType("workers._helper")
    monkeypatch.setitem(sys.modules, made.__name__, made)  # dataclasses look their module up
    monkeypatch.setattr(sys.modules[__name__], "BEFORE", {})

    def load(source: str) -> types.ModuleType:
        if "__builtins__" in made.__dict__:
            BEFORE[made] = dict(made.__dict__)
        exec(compile(textwrap.dedent(source), "workers/_helper.py", "exec"), made.__dict__)
        return made

    return load


def moved(state, *modules):
    """``upgrade.classes`` on ``state`` for ``modules``, each reloaded if ``module`` did."""
    return upgrade.classes(state, {m.__name__: upgrade.Namespaces(m.__dict__, BEFORE.get(m)) for m in modules})


CLIENT = """
class Client:
    def __init__(self):
        self.calls = 0
    def hello(self):
        return "VERSION"
"""


def test_an_instance_moves_to_the_new_class_and_keeps_its_attributes(module):
    old = module(CLIENT.replace("VERSION", "old"))
    client = old.Client()
    client.calls = 3
    state = {"client": client}
    new = module(CLIENT.replace("VERSION", "new"))
    report = moved(state, new)
    assert state["client"] is client
    assert client.hello() == "new" and isinstance(client, new.Client)
    assert client.calls == 3
    assert report.moved == 1 and report.left == []


def test_every_container_is_followed(module):
    old = module(CLIENT.replace("VERSION", "old") + "class Slotted:\n    __slots__ = ('inner', '__private')\n")
    made = [old.Client() for _ in range(9)]
    slotted = old.Slotted()
    slotted.inner = made[7]
    slotted._Slotted__private = made[8]
    holder = old.Client()
    holder.child = slotted
    state = {
        made[0]: "as a key",
        "value": made[1],
        "list": [[made[2]]],
        "tuple": (made[3],),
        "set": {made[4]},
        "frozenset": frozenset({made[5]}),
        "nested": {"deeper": {"deepest": made[6]}},
        "holder": holder,
    }
    new = module(CLIENT.replace("VERSION", "new") + "class Slotted:\n    __slots__ = ('inner', '__private')\n")
    report = moved(state, new)
    assert [c.hello() for c in made] == ["new"] * 9
    assert isinstance(slotted, new.Slotted) and isinstance(holder, new.Client)
    assert report.moved == 11 and report.left == []


def test_cycles_and_shared_objects_are_visited_once(module):
    old = module(CLIENT.replace("VERSION", "old"))
    client = old.Client()
    client.me = client
    loop: list = []
    loop.append(loop)
    loop.append(client)
    state = {"a": client, "b": client, "loop": loop}
    new = module(CLIENT.replace("VERSION", "new"))
    report = moved(state, new)
    assert client.hello() == "new"
    assert report.moved == 1
    assert report.visited == 3  # the state, the client, the list: nothing twice


def test_objects_of_modules_not_reloaded_and_already_new_ones_are_left_alone(module):
    other = types.ModuleType("workers._other")
    exec("class Other:\n    pass\n", other.__dict__)
    module(CLIENT.replace("VERSION", "old"))
    new = module(CLIENT.replace("VERSION", "new"))
    fresh, foreign = new.Client(), other.Other()
    state = {"fresh": fresh, "foreign": foreign}
    report = moved(state, new)
    assert type(fresh) is new.Client and type(foreign) is other.Other
    assert report.moved == 0 and report.left == []


def test_the_walk_does_not_enter_modules_classes_or_functions(module):
    """Only the state's own objects are visited: never the heap behind a module, a class or
    a function that the state refers to."""
    module(CLIENT.replace("VERSION", "old"))
    new = module(CLIENT.replace("VERSION", "new"))
    client = new.Client()
    client.json = sys.modules["json"]
    state = {"sys": sys, "class": new.Client, "function": textwrap.dedent, "method": client.hello, "c": client}
    report = moved(state, new)
    # the state, the five values; and the client's json module, not entered
    assert report.visited == 7


def test_a_deep_chain_does_not_overflow_the_stack(module):
    node = "class Node:\n    def __init__(self, nxt):\n        self.nxt = nxt\n    def v(self):\n        return VERSION\n"
    old = module(node.replace("VERSION", "1"))
    head = None
    for _ in range(100_000):
        head = old.Node(head)
    state = {"head": head}
    new = module(node.replace("VERSION", "2"))
    assert moved(state, new).moved == 100_000
    assert state["head"].nxt.nxt.v() == 2


def test_nested_classes_and_container_subclasses_move(module):
    source = """
class Outer:
    class Inner:
        def v(self):
            return VERSION
class Bag(dict):
    def v(self):
        return VERSION
class Row(list):
    pass
"""
    old = module(source.replace("VERSION", "1"))
    inner, bag, row = old.Outer.Inner(), old.Bag(), old.Row()
    bag["inner"] = inner
    row.append(old.Outer.Inner())
    state = {"bag": bag, "row": row}
    new = module(source.replace("VERSION", "2"))
    assert moved(state, new).moved == 4
    assert inner.v() == 2 and bag.v() == 2 and row[0].v() == 2 and isinstance(row, new.Row)


# --- what cannot move: left with its old class, and named --------------------------------


def test_a_changed_slots_layout_is_left_and_named_where_it_sits(module):
    old = module("""
class Pool:
    def __init__(self, conns):
        self._pool = conns
class Conn:
    __slots__ = ("sock",)
""")
    conns = [old.Conn() for _ in range(5)]
    old_conn = old.Conn
    state = {"client": old.Pool(conns)}
    new = module("""
class Pool:
    def __init__(self, conns):
        self._pool = conns
class Conn:
    __slots__ = ("sock", "peer")
""")
    report = moved(state, new)
    assert all(type(c) is old_conn for c in conns)
    assert type(state["client"]) is new.Pool
    [left] = report.left
    assert left.path == "state['client']._pool[0]"
    assert left.cls == "workers._helper.Conn" and left.count == 5
    assert "__slots__ changed" in left.why and "('sock',) -> ('sock', 'peer')" in left.why
    assert "state['client']._pool[0]" in left.message() and "4 more" in left.message()


def test_a_class_that_no_longer_exists_is_named(module):
    old = module("class Gone:\n    pass\n")
    gone_class = old.Gone
    gone = gone_class()
    state = {"items": [1, {"x": gone}]}
    new = module("class Other:\n    pass\n")
    assert new.Gone is gone_class  # importlib.reload keeps names the new source dropped
    [left] = moved(state, new).left
    assert left.path == "state['items'][1]['x']"
    assert "no longer defines Gone" in left.why
    assert type(gone) is gone_class


def test_a_class_deleted_from_the_namespace_is_gone_too(module):
    old = module("class Gone:\n    pass\n")
    gone = old.Gone()
    new = module("class Other:\n    pass\ndel Gone\n")
    [left] = moved({"g": gone}, new).left
    assert "no longer defines Gone" in left.why


def test_a_module_not_reloaded_now_keeps_its_classes_current(module):
    """A folder module not reloaded in this swap: its classes are the current ones."""
    old = module("class Same:\n    pass\n")
    same = old.Same()
    report = upgrade.classes({"s": same}, {old.__name__: upgrade.Namespaces(old.__dict__, None)})
    assert report.moved == 0 and report.left == []


def test_a_name_now_bound_to_something_else_is_not_a_new_class(module):
    module("class Client:\n    pass\n")
    client = sys.modules["workers._helper"].Client()
    new = module("class Real:\n    pass\nClient = Real\n")
    [left] = moved({"c": client}, new).left
    assert "Client is now workers._helper.Real" in left.why
    assert type(client) is not new.Real


def test_an_enum_member_is_left(module):
    old = module("import enum\nclass Color(enum.Enum):\n    RED = 1\n")
    red = old.Color.RED
    old_color = old.Color
    new = module("import enum\nclass Color(enum.Enum):\n    RED = 1\n    BLUE = 2\n")
    [left] = moved({"color": red}, new).left
    assert type(red) is old_color
    assert left.path == "state['color']" and "Enum member" in left.why


def test_a_different_builtin_base_is_left(module):
    old = module("class Box:\n    pass\n")
    box = old.Box()
    new = module("class Box(int):\n    pass\n")
    [left] = moved({"box": box}, new).left
    assert type(box) is not new.Box and "cannot take it" in left.why


def test_a_class_made_inside_a_function_is_left(module):
    old = module("def factory():\n    class Local:\n        pass\n    return Local()\n")
    local = old.factory()
    new = module("def factory():\n    class Local:\n        pass\n    return Local()\n")
    [left] = moved({"local": local}, new).left
    assert "inside a function" in left.why


def test_left_objects_are_grouped_by_class_and_reason(module):
    old = module("class A:\n    __slots__ = ('x',)\nclass B:\n    __slots__ = ('x',)\n")
    state = {"a": [old.A(), old.A()], "b": old.B()}
    new = module("class A:\n    __slots__ = ('y',)\nclass B:\n    __slots__ = ('y',)\n")
    left = moved(state, new).left
    assert [(x.cls, x.count, x.path) for x in left] == [
        ("workers._helper.A", 2, "state['a'][0]"), ("workers._helper.B", 1, "state['b']"),
    ]


def test_paths_name_keys_set_elements_and_odd_attributes(module):
    old_a = module("class A:\n    __slots__ = ('x',)\n").A
    state = {
        ("k", 1): [old_a()],
        old_a(): 1,
        "s": {old_a()},
        "holder": types.SimpleNamespace(),
    }
    vars(state["holder"])["not an identifier"] = old_a()
    new = module("class A:\n    __slots__ = ('y',)\n")
    [left] = moved(state, new).left
    assert left.count == 4
    # the first one found, in the order of the state: the list under the tuple key
    assert left.path == "state[('k', 1)][0]"
    report = moved({"a": 1, old_a(): 2}, new)
    assert report.left[0].path == "list(state)[1]"
    report = moved({"s": [0, {old_a()}]}, new)
    assert report.left[0].path == "list(state['s'][1])[0]"
    report = moved({"h": state["holder"]}, new)
    assert report.left[0].path == "vars(state['h'])['not an identifier']"


# --- dataclasses --------------------------------------------------------------------------


POINT = """
from dataclasses import dataclass, field
@dataclass(frozen=FROZEN)
class Point:
    x: int
    FIELDS
    def v(self):
        return "VERSION"
"""


def point(frozen: bool = False, fields: str = "", version: str = "old") -> str:
    return POINT.replace("FROZEN", str(frozen)).replace("FIELDS", fields or "pass").replace("VERSION", version)


@pytest.mark.parametrize("frozen", [False, True])
def test_a_dataclass_gets_the_defaults_of_its_new_fields(module, frozen):
    old = module(point(frozen))
    p = old.Point(1)
    new = module(point(frozen, "y: int = 7\n    tags: list = field(default_factory=list)", "new"))
    report = moved({"p": p}, new)
    assert report.left == [] and report.moved == 1
    assert p == new.Point(1, 7, []) and p.v() == "new"
    assert repr(p) == "Point(x=1, y=7, tags=[])"


def test_a_dataclass_whose_new_field_has_no_default_is_left(module):
    old = module(point())
    p = old.Point(1)
    new = module(point(fields="y: int", version="new"))
    [left] = moved({"p": p}, new).left
    assert "new field 'y' has no default" in left.why
    assert type(p) is not new.Point and not hasattr(p, "y") and p.v() == "old"


def test_a_default_factory_that_raises_leaves_the_object_untouched(module):
    old = module(point())
    p = old.Point(1)
    new = module(point(fields="y: int = 2\n    z: list = field(default_factory=lambda: 1 / 0)", version="new"))
    [left] = moved({"p": p}, new).left
    assert "ZeroDivisionError" in left.why
    assert vars(p) == {"x": 1} and p.v() == "old"  # y, computed first, was not set either


def test_a_dataclass_keeps_fields_the_new_class_dropped(module):
    old = module(point(fields="y: int = 0"))
    p = old.Point(1, 2)
    new = module(point(version="new"))
    moved({"p": p}, new)
    assert p.v() == "new" and vars(p) == {"x": 1, "y": 2}


# --- keys whose hash changes with their class ----------------------------------------------


KEY = """
class Key:
    def __init__(self, n):
        self.n = n
    def __eq__(self, other):
        return isinstance(other, Key) and self.n == other.n
    def __hash__(self):
        return hash(("SALT", self.n))
"""


def test_dicts_and_sets_are_rehashed_when_their_keys_hash_changed(module):
    old = module(KEY.replace("SALT", "old"))
    keys = [old.Key(n) for n in range(50)]
    table = {k: k.n for k in keys}
    members = set(keys)
    state = {"table": table, "members": members}
    new = module(KEY.replace("SALT", "new"))
    report = moved(state, new)
    assert report.left == [] and report.moved == 50
    assert all(table[new.Key(n)] == n for n in range(50))
    assert all(new.Key(n) in members for n in range(50))
    assert list(table.values()) == list(range(50))  # order kept


def test_a_key_of_a_frozenset_whose_hash_changed_is_left(module):
    old = module(KEY.replace("SALT", "old"))
    old_key = old.Key
    key = old_key(1)
    frozen = frozenset({key})
    new = module(KEY.replace("SALT", "new"))
    [left] = moved({"f": frozen}, new).left
    assert type(key) is old_key
    assert key in frozen and "hash" in left.why and left.path == "list(state['f'])[0]"



def test_keys_whose_dict_cannot_be_rehashed_keep_their_old_class_and_the_dict_still_finds_them(module):
    # The new __hash__ raises for one key: the dict cannot be rebuilt at the new hashes, so
    # none of its keys may move, or the dict would no longer find them at their old ones.
    old = module(KEY.replace("SALT", "old"))
    old_key = old.Key
    keys = [old_key(n) for n in range(5)]
    table = {k: k.n for k in keys}
    new = module(KEY.replace('return hash(("SALT", self.n))',
                             'if self.n == 3:\n            raise ValueError("no hash for 3")\n'
                             '        return hash(("new", self.n))'))
    report = moved({"table": table}, new)
    assert all(type(k) is old_key for k in keys)
    assert all(table[k] == k.n for k in keys)  # found at their hashes
    assert report.moved == 0 and [left.count for left in report.left] == [5]
    assert "no hash for 3" in report.left[0].why and report.left[0].cls.endswith("Key")


# --- migrate ---------------------------------------------------------------------------------


def test_migrate_gets_a_copy_and_its_result_is_the_new_state():
    live = {"items": [1, 2], "name": "x"}

    def migrate(state, old_version):
        state["items"].append(3)
        return {"entries": state["items"], "from": old_version}

    assert upgrade.migrated(migrate, live, 1) == {"entries": [1, 2, 3], "from": 1}
    assert live == {"items": [1, 2], "name": "x"}


def test_a_migrate_that_raises_leaves_the_live_state_as_it_was():
    live = {"items": [1]}

    def migrate(state, old_version):
        state["items"].clear()
        raise KeyError("total")

    with pytest.raises(KeyError):
        upgrade.migrated(migrate, live, 1)
    assert live == {"items": [1]}


def test_migrate_must_return_a_dict():
    def migrate(state, old_version):
        state["x"] = 1  # forgot the return

    with pytest.raises(upgrade.MigrateError, match=r"migrate\(state, 1\) returned NoneType, not a dict"):
        upgrade.migrated(migrate, {}, 1)


def test_a_state_that_cannot_be_copied_is_an_error_that_says_what_to_do():
    import threading

    with pytest.raises(upgrade.MigrateError, match=r"copy.deepcopy.*lock"):
        upgrade.migrated(lambda state, old: state, {"lock": threading.Lock()}, 1)


@pytest.mark.skipif(sys.version_info < (3, 10), reason="dataclass(slots=True) is Python 3.10+")
def test_a_slotted_dataclass_gets_an_empty_slot_filled(module):
    source = """
from dataclasses import dataclass
@dataclass(slots=True)
class Point:
    x: int
    y: int DEFAULT
    def v(self):
        return VERSION
"""
    old = module(source.replace("DEFAULT", "").replace("VERSION", "1"))
    p = old.Point(1, 2)
    del p.y
    new = module(source.replace("DEFAULT", "= 5").replace("VERSION", "2"))
    assert moved({"p": p}, new).left == []
    assert p == new.Point(1, 5) and p.v() == 2


def test_the_standard_mappings_are_rehashed_in_order_and_other_subclasses_keep_their_keys(module):
    import collections

    old = module(KEY.replace("SALT", "old"))
    old_key = old.Key
    ordered = collections.OrderedDict((old_key(n), n) for n in range(20))
    ordered.move_to_end(old_key(0))
    grouped = collections.defaultdict(list, {old_key(n): [n] for n in range(20)})
    counted = collections.Counter({old_key(n): n for n in range(20)})

    class Custom(dict):
        pass

    custom_key = old_key(99)
    custom = Custom({custom_key: 1})
    new = module(KEY.replace("SALT", "new"))
    report = moved({"o": ordered, "g": grouped, "c": counted, "x": custom}, new)
    assert report.moved == 60
    assert [k.n for k in ordered] == [*range(1, 20), 0] and ordered[new.Key(0)] == 0
    assert all(grouped[new.Key(n)] == [n] for n in range(20)) and len(grouped) == 20
    assert all(counted[new.Key(n)] == n for n in range(20))
    [left] = report.left
    assert type(custom_key) is old_key and custom[custom_key] == 1
    assert "it is a key of a Custom" in left.why and left.path == "list(state['x'])[0]"


def test_a_state_that_cannot_be_looked_through_is_left_as_it_is_and_said_so(module):
    old = module("class Odd:\n    __slots__ = ('x',)\nclass Fine:\n    pass\n")
    odd, fine = old.Odd(), old.Fine()
    old.Odd.__slots__ = 5  # allowed after the class is made; no longer a list of names
    old_fine = old.Fine
    new = module("class Odd:\n    pass\nclass Fine:\n    pass\n")
    report = moved({"odd": odd, "fine": fine}, new)
    assert report.moved == 0 and type(fine) is old_fine
    assert report.error is not None and "TypeError" in report.error
