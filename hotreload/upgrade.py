"""What a reload does to a worker's ``ctx.state``: ``migrated`` runs the worker's
``migrate(state, old_version)`` on a copy when its ``STATE_VERSION`` changed, and ``classes``
moves the objects of the state to the new classes of the reloaded modules.

Both run at the quiescent point of a swap — the old version has stopped, the new one has not
started — so no thread of the worker uses the state meanwhile.

``classes`` follows the state itself (dict keys and values, lists, tuples, deques, sets,
instances' ``__dict__`` and ``__slots__``), each object once, and never looks at the rest of
the heap (no ``gc.get_referrers``, which is what makes IPython's autoreload and jurigged slow
on large heaps): its cost is proportional to the size of the state. It does not enter
modules, classes or functions that the state refers to, as these lead to the whole program.

An object is moved by ``obj.__class__ = new``, where ``new`` is the class of the same
qualified name in the reloaded module. Each object is moved atomically: whatever can fail is
done first (a new dataclass field's ``default_factory``, the assignment Python checks), the
infallible writes after, and an object whose new hash does not fit a container that cannot be
rebuilt is put back. An object that cannot move keeps its old class, whole, and is reported
as ``Left``: where it sits in the state (``state['client']._pool[3]``) and why.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import enum
import functools
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

from hotreload import safe

__all__ = ["Left", "MigrateError", "Namespaces", "Report", "classes", "migrated"]


# --- migrate -----------------------------------------------------------------------------


class MigrateError(Exception):
    """``migrate`` could not be given a copy of the state, or did not return a dict."""


def migrated(migrate: Callable[[dict, Any], Any], state: dict, old_version: int) -> dict:
    """The state ``migrate(copy, old_version)`` returns, given a deep copy of ``state``:
    whatever ``migrate`` does to its argument, or raises, the live state stays as it was, so
    a failed migration rolls back with the rest of the reload. What it raises propagates."""
    try:
        copied = copy.deepcopy(state)
    except Exception as exc:  # noqa: BLE001 - whatever __deepcopy__ or __reduce_ex__ raises
        raise MigrateError(
            f"migrate gets a copy of ctx.state (copy.deepcopy), and the state cannot be copied: "
            f"{safe.one_line(exc)}. Keep objects that cannot be copied (locks, sockets, open files) with ctx.keep, not in ctx.state"
        ) from exc
    result = migrate(copied, old_version)
    if not isinstance(result, dict):
        raise MigrateError(
            f"migrate(state, {old_version!r}) returned {type(result).__name__}, not a dict: "
            "it must return the new state"
        )
    return result


# --- classes -----------------------------------------------------------------------------


class Namespaces(NamedTuple):
    """One of the folder's modules: its namespace now, and before this swap reloaded it
    (None if this swap did not reload it: its classes are the current ones)."""

    now: Mapping[str, Any]
    before: Mapping[str, Any] | None


@dataclass(frozen=True)
class Left:
    """Objects of class ``cls`` that kept it for one reason: where the first one sits, and
    how many there are."""

    path: str
    cls: str
    why: str
    count: int = 1

    def message(self) -> str:
        more = f" (and {self.count - 1} more of that class)" if self.count > 1 else ""
        return f"{self.path} keeps its old class {self.cls}{more}: {self.why}"


@dataclass
class Report:
    visited: int = 0  # objects of the state looked at (numbers and strings not counted)
    moved: int = 0
    left: list[Left] = field(default_factory=list)  # in the order the state holds them
    error: str | None = None  # why nothing was moved: the state could not be looked through


# Objects that hold no reference worth following.
_ATOMS = frozenset({int, float, complex, bool, str, bytes, bytearray, type(None), range, slice, type(Ellipsis)})
# Objects whose attributes are not followed: they lead to the whole program, not the state.
_OPAQUE = (
    types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.CodeType,
    types.FrameType, types.TracebackType, types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType,
    types.MethodWrapperType, types.WrapperDescriptorType, types.MethodDescriptorType, types.GetSetDescriptorType,
    types.MemberDescriptorType, property, staticmethod, classmethod,
)
# Containers whose elements are hashed, and how to rebuild one in place when an element's
# hash changed with its class. Subclasses with their own structure (an OrderedDict is not
# a plain dict inside) are rebuilt only through their own type's methods.
_REBUILD: dict[type, tuple[Callable[[Any], Any], Callable[[Any, Any], Any]]] = {
    dict: (dict.clear, dict.update),
    collections.defaultdict: (dict.clear, dict.update),
    collections.Counter: (dict.clear, dict.update),
    collections.OrderedDict: (collections.OrderedDict.clear, collections.OrderedDict.update),
    set: (set.clear, set.update),
}
_MISSING = dataclasses.MISSING


@dataclass(frozen=True)
class _Move:
    new: type
    fields: tuple  # (name, default, default_factory) of the new class's dataclass fields
    slots: dict  # the new class's slots by name: an object it took is written through these


@dataclass(frozen=True)
class _Stay:
    why: str


def classes(state: dict, modules: Mapping[str, Namespaces]) -> Report:
    """Move every object reachable from ``state`` whose class was defined in one of
    ``modules`` (by module name) and is no longer that module's class of the same qualified
    name to the current one. Returns what was moved and what was left, and why."""
    walk = _Walk(modules)
    try:
        walk.run(state)
        # An OrderedDict finds its own order by hashing its keys: read it before any key moves.
        orders = {id(home): list(collections.OrderedDict.items(home))
                  for homes in walk.homes.values() for home in homes if type(home) is collections.OrderedDict}
    except Exception as exc:  # noqa: BLE001 - a class of the user's that Python cannot read as it was made
        return Report(visited=len(walk.seen), error=f"looking through it raised {safe.one_line(exc)}")
    report = Report(visited=len(walk.seen))
    groups: dict[int, tuple] = {}  # id of an object left -> (its class's name, why)
    rebuild: dict[int, tuple[Any, list]] = {}  # id of a dict or set -> (it, its keys moved, each with its undo)
    for obj in walk.candidates:
        old = type(obj)
        try:
            why = _move(obj, walk.plans[old], walk.homes.get(id(obj), ()), rebuild)
        except Exception as exc:  # noqa: BLE001 - _move checks what it knows can fail; this is the rest
            why = f"moving it raised {safe.one_line(exc)}"
        if why is None:
            report.moved += 1
        else:
            groups[id(obj)] = (f"{old.__module__}.{old.__qualname__}", why)
    for obj, why in _rehash(rebuild, orders).values():
        report.moved -= 1
        groups[id(obj)] = (f"{type(obj).__module__}.{type(obj).__qualname__}", why)
    if groups:
        try:
            report.left = walk.left(state, groups)
        except Exception:  # noqa: BLE001 - as in the first walk: then the objects go unnamed
            counts = collections.Counter(groups.values())
            report.left = [Left("an object of ctx.state", cls, why, count) for (cls, why), count in counts.items()]
    return report


_DICT, _SET, _SEQUENCE = 1, 2, 3


class _Plan(NamedTuple):
    """How the walk reads objects of one type, decided once per type."""

    shape: int  # _DICT, _SET, _SEQUENCE or 0
    iterate: Any  # the built-in type's own iteration, for _SET and _SEQUENCE
    attributes: Any  # Python's descriptor of the instances' __dict__, or None
    slots: tuple  # (name, member descriptor) of each __slots__ entry
    decision: Any  # None (nothing to do), _Move or _Stay


class _Walk:
    """The objects of one state, each reached once, through the built-in types' own
    methods, never the objects' overrides: a walk of the state runs none of its code."""

    def __init__(self, modules: Mapping[str, Namespaces]) -> None:
        self.modules = modules
        self.plans: dict[type, _Plan] = {}
        self.seen: dict[int, Any] = {}  # id -> object: each held alive while ids are compared
        self.candidates: list = []  # objects whose class is not their module's current one
        self.homes: dict[int, list] = {}  # id of a candidate -> the dicts and sets it is a key of

    def plan(self, kind: type) -> _Plan:
        plan = self.plans.get(kind)
        if plan is None:
            plan = self.plans[kind] = _plan(kind, self.modules)
        return plan

    def run(self, state: dict) -> None:
        # The hot loop of a reload with a large state: references are checked inline, and a
        # type's plan unpacked once per object.
        seen, stack, plans, homes, atoms = self.seen, [state], self.plans, self.homes, _ATOMS
        seen[id(state)] = state
        while stack:
            obj = stack.pop()
            kind = type(obj)
            shape, iterate, attributes, slots, decision = plans.get(kind) or self.plan(kind)
            if decision is not None:
                self.candidates.append(obj)
            children: Any = ()
            if shape == _SEQUENCE:
                # A list or tuple of its exact type is iterated as it is (nothing runs meanwhile
                # that could resize it in a way its iterator minds); any other is copied first.
                children = obj if kind is list or kind is tuple else list(iterate(obj))
            elif shape == _DICT:
                for key in list(dict.keys(obj)):
                    if type(key) not in atoms:
                        if self.plan(type(key)).decision is not None:
                            homes.setdefault(id(key), []).append(obj)
                        if id(key) not in seen:
                            seen[id(key)] = key
                            stack.append(key)
                children = list(dict.values(obj))
            elif shape == _SET:
                for item in list(iterate(obj)):
                    if type(item) not in atoms:
                        if self.plan(type(item)).decision is not None:
                            homes.setdefault(id(item), []).append(obj)
                        if id(item) not in seen:
                            seen[id(item)] = item
                            stack.append(item)
            for child in children:
                if type(child) not in atoms and id(child) not in seen:
                    seen[id(child)] = child
                    stack.append(child)
            if attributes is not None:
                try:
                    own = attributes.__get__(obj, kind)
                except Exception:  # noqa: BLE001 - a C type's own descriptor that refuses
                    own = None
                if type(own) is dict:
                    for child in list(dict.values(own)):
                        if type(child) not in atoms and id(child) not in seen:
                            seen[id(child)] = child
                            stack.append(child)
            for _, slot in slots:
                try:
                    child = slot.__get__(obj, kind)
                except AttributeError:  # an empty slot
                    continue
                if type(child) not in atoms and id(child) not in seen:
                    seen[id(child)] = child
                    stack.append(child)

    def children(self, obj: Any) -> list:
        """(step, child) for each reference the walk follows, in the object's own order."""
        kind = type(obj)
        plan = self.plan(kind)
        found: list = []
        if plan.shape == _DICT:
            for index, (key, value) in enumerate(list(dict.items(obj))):
                found += [(("key", index), key), (("value", index, key), value)]
        elif plan.shape:
            found += [((("key" if plan.shape == _SET else "item"), index), item)
                      for index, item in enumerate(list(plan.iterate(obj)))]
        attributes = _read(plan.attributes, obj, kind) if plan.attributes is not None else None
        if type(attributes) is dict:
            found += [(("attr", name), value) for name, value in list(dict.items(attributes))]
        for name, slot in plan.slots:
            try:
                found.append((("attr", name), slot.__get__(obj, kind)))
            except AttributeError:
                pass
        return found

    def left(self, state: dict, groups: dict[int, tuple]) -> list:
        """The objects left, one ``Left`` per class and reason, named by the path to the
        first one in the order the state holds them. A second walk, depth first in that
        order, made only when something was left: the usual walk records no paths."""
        counts = collections.Counter(groups.values())
        paths: dict[tuple, str] = {}
        done: set = {id(state)}
        stack: list = [(state, "state")]
        while stack and len(paths) < len(counts):
            obj, path = stack.pop()
            group = groups.get(id(obj))
            if group is not None and group not in paths:
                paths[group] = path
            children = []
            for step, child in self.children(obj):
                if type(child) not in _ATOMS and id(child) not in done:
                    done.add(id(child))
                    children.append((child, _step_text(path, step)))
            stack.extend(reversed(children))
        return [Left(path, cls, why, counts[(cls, why)]) for (cls, why), path in paths.items()]


def _read(descriptor: Any, obj: Any, kind: type) -> Any:
    try:
        return descriptor.__get__(obj, kind)
    except Exception:  # noqa: BLE001 - a C type's own descriptor that refuses
        return None


def _plan(kind: type, modules: Mapping[str, Namespaces]) -> _Plan:
    shape, iterate = 0, None
    if issubclass(kind, dict):
        shape = _DICT
    elif issubclass(kind, (list, tuple, collections.deque)):
        shape = _SEQUENCE
        iterate = next(base for base in (list, tuple, collections.deque) if issubclass(kind, base)).__iter__
    elif issubclass(kind, (set, frozenset)):
        shape, iterate = _SET, (set if issubclass(kind, set) else frozenset).__iter__
    opaque = issubclass(kind, _OPAQUE)
    attributes = None if opaque else _dict_descriptor(kind)
    slots = () if opaque else _slots(kind)
    return _Plan(shape, iterate, attributes, slots, _decide(kind, modules))


def _dict_descriptor(kind: type) -> Any:
    """Python's descriptor of the instances' own ``__dict__`` (a getset, or a member in a
    C type such as SimpleNamespace), never a property of the user's."""
    for klass in kind.__mro__:
        found = klass.__dict__.get("__dict__")
        if found is not None:
            return found if type(found) in (types.GetSetDescriptorType, types.MemberDescriptorType) else None
    return None


def _slots(kind: type) -> tuple:
    """(attribute name, member descriptor) of every ``__slots__`` entry of ``kind``'s MRO."""
    entries = []
    for klass in reversed(kind.__mro__):
        names = klass.__dict__.get("__slots__", ())
        for name in (names,) if isinstance(names, str) else names:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{name}"  # name mangling, as the class did
            descriptor = klass.__dict__.get(name)
            if type(descriptor) is types.MemberDescriptorType:
                entries.append((name, descriptor))
    return tuple(entries)


def _layout(kind: type) -> tuple:
    return tuple(name for name, _ in _slots(kind))


def _resolve(namespace: Mapping[str, Any] | None, qualname: str) -> Any:
    """What ``qualname`` (``Outer.Inner``) names in ``namespace``, or None."""
    if namespace is None:
        return None
    first, *rest = qualname.split(".")
    found = namespace.get(first)
    for part in rest:
        found = found.__dict__.get(part) if isinstance(found, type) else None
    return found


def _decide(kind: type, modules: Mapping[str, Namespaces]) -> Any:
    """None if objects of ``kind`` stay as they are (not from one of ``modules``, or current),
    else how to move them (``_Move``) or why they cannot (``_Stay``)."""
    module = kind.__dict__.get("__module__")
    namespaces = modules.get(module) if isinstance(module, str) else None
    if namespaces is None:
        return None
    qualname = kind.__qualname__
    if "<locals>" in qualname:
        if namespaces.before is None:
            return None
        return _Stay("its class was made inside a function, so there is no new class of that name to move it to")
    found = _resolve(namespaces.now, qualname)
    if found is kind:
        reloaded = namespaces.before is not None
        if reloaded and _resolve(namespaces.before, qualname) is kind:  # the new code did not redefine it
            return _Stay(f"the new {module} no longer defines {qualname}")
        return None
    if found is None:
        return _Stay(f"the new {module} no longer defines {qualname}")
    if not isinstance(found, type) or found.__module__ != module or found.__qualname__ != qualname:
        what = f"{found.__module__}.{found.__qualname__}" if isinstance(found, type) else type(found).__name__
        return _Stay(f"{module}.{qualname} is now {what}, not a class of that name")
    if issubclass(kind, enum.Enum):
        return _Stay("an Enum member cannot change class (the new Enum has members of its own): compare by .name")
    if _layout(kind) != _layout(found):
        return _Stay(f"its __slots__ changed ({_layout(kind)} -> {_layout(found)})")
    fields: tuple = ()
    if dataclasses.is_dataclass(found):
        fields = tuple((f.name, f.default, f.default_factory) for f in dataclasses.fields(found))
    return _Move(found, fields, dict(_slots(found)))


def _move(obj: Any, plan: _Plan, homes: Any, rebuild: dict[int, tuple[Any, list]]) -> str | None:
    """Move one object to its new class, wholly or not at all; None if moved, else why not.
    Containers it is a key of whose hash changed are added to ``rebuild``."""
    decision = plan.decision
    if isinstance(decision, _Stay):
        return decision.why
    old = type(obj)
    if not decision.fields and not homes:  # the usual case, and the fast one
        try:
            object.__setattr__(obj, "__class__", decision.new)
        except Exception as exc:  # noqa: BLE001 - Python's own check of the two layouts
            return f"the new class cannot take it ({safe.one_line(exc)})"
        return None
    attributes = _read(plan.attributes, obj, old) if plan.attributes is not None else None
    attributes = attributes if type(attributes) is dict else None
    slots = dict(plan.slots)
    values: dict = {}
    for name, default, factory in decision.fields:
        if (attributes is not None and name in attributes) or _slot_is_set(obj, old, slots.get(name)):
            continue
        if name not in slots and attributes is None:
            return f"its new field {name!r} has no place in it (no __dict__, no slot)"
        if default is not _MISSING:
            values[name] = default
        elif factory is not _MISSING:
            try:
                values[name] = factory()
            except Exception as exc:  # noqa: BLE001 - the user's factory
                return f"the default_factory of its new field {name!r} raised {safe.one_line(exc)}"
        else:
            return f"its new field {name!r} has no default"
    before = _hash(obj) if homes else None
    try:
        object.__setattr__(obj, "__class__", decision.new)
    except Exception as exc:  # noqa: BLE001 - Python's own check of the two layouts
        return f"the new class cannot take it ({safe.one_line(exc)})"
    for name, value in values.items():
        if name in slots:
            decision.slots[name].__set__(obj, value)
        else:
            attributes[name] = value  # type: ignore[index] # checked above: it has a __dict__
    if not homes:
        return None
    after = _hash(obj)
    if after is not None and after == before:
        return None
    stuck = [home for home in homes if type(home) not in _REBUILD]
    undo = functools.partial(_put_back, obj, old, values, slots, attributes)
    if stuck:  # put it back as it was: its old hash is the one its containers know
        undo()
        return (f"its hash changes with the new class, and it is a key of a {type(stuck[0]).__name__}, "
                "which cannot be rebuilt in place")
    for home in homes:
        rebuild.setdefault(id(home), (home, []))[1].append((obj, undo))
    return None


def _put_back(obj: Any, old: type, values: dict, slots: dict, attributes: dict | None) -> None:
    """Undo a move: the old class again, without the fields the move set."""
    object.__setattr__(obj, "__class__", old)
    for name in values:
        if name in slots:
            slots[name].__delete__(obj)
        else:
            del attributes[name]  # type: ignore[attr-defined]


def _slot_is_set(obj: Any, kind: type, slot: Any) -> bool:
    if slot is None:
        return False
    try:
        slot.__get__(obj, kind)
    except AttributeError:
        return False
    return True


def _hash(obj: Any) -> int | None:
    try:
        return hash(obj)
    except Exception:  # noqa: BLE001 - the user's __hash__
        return None


def _rehash(rebuild: dict[int, tuple[Any, list]], orders: dict[int, list]) -> dict[int, tuple[Any, str]]:
    """Put each dict's or set's elements back into it, each at its new hash. One that cannot
    be rebuilt (a key's new ``__hash__`` or ``__eq__`` raised) is left as it is, and its keys
    are put back in their old class, at the hashes it knows them by; the others are then
    rehashed again, as a key put back may be one of theirs too. Nothing is written before all
    are known to succeed. Returns the keys put back (by id), each with why."""
    put_back: dict[int, tuple[Any, str]] = {}
    while True:
        rebuilt: dict[int, Any] = {}
        for key, (home, _) in rebuild.items():
            try:
                rebuilt[key] = _rehashed(home, orders.get(key))
            except Exception as exc:  # noqa: BLE001 - the keys' __hash__ or __eq__
                why = (f"its hash changes with the new class, and rehashing the {type(home).__name__} it is a "
                       f"key of raised {safe.one_line(exc)}")
                break
        else:
            break
        for obj, undo in rebuild.pop(key)[1]:
            if id(obj) not in put_back:
                undo()
                put_back[id(obj)] = (obj, why)
    for key, elements in rebuilt.items():
        home = rebuild[key][0]
        clear, update = _REBUILD[type(home)]
        clear(home)
        update(home, elements)
    return put_back


def _rehashed(home: Any, order: list | None) -> Any:
    """A new dict or set of ``home``'s elements at their hashes now. ``order``: an
    OrderedDict's items, read before its keys moved."""
    if order is not None:
        items = order
    else:
        items = list(dict.items(home)) if isinstance(home, dict) else list(set.__iter__(home))
    return dict(items) if isinstance(home, dict) else set(items)


def _step_text(parent: str, step: tuple) -> str:
    kind = step[0]
    if kind == "item":
        return f"{parent}[{step[1]}]"
    if kind == "key":
        return f"list({parent})[{step[1]}]"
    if kind == "value":
        key = step[2]
        return f"{parent}[{key!r}]" if _plain(key) else f"list({parent}.values())[{step[1]}]"
    name = step[1]
    return f"{parent}.{name}" if isinstance(name, str) and name.isidentifier() else f"vars({parent})[{name!r}]"


def _plain(key: Any) -> bool:
    """A key whose repr is short and safe to show: a number, a string, a tuple of such."""
    if type(key) is tuple:
        return len(key) <= 4 and all(_plain(part) for part in key)
    return type(key) in (int, float, bool, str, bytes, type(None)) and len(repr(key)) <= 60
