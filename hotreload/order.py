"""Start order among workers: ``AFTER = ["db", "cache"]`` as a graph, in pure functions.

A worker starts once the workers it names are ready, and stops before them. This is not the
import graph (``loader.reload_order`` orders modules for a reload): it is the one the user
declares between workers, by name. Each function takes the graph as a mapping from a worker's
name to its ``AFTER``, so it is tested without threads, and core asks it with the records'
current settings.
"""
from __future__ import annotations

from typing import Collection, Iterable, Mapping, Sequence

__all__ = ["dependents", "dependencies_first", "problem", "stoppable", "waiting_for"]

Afters = Mapping[str, Sequence[str]]


def problem(name: str, after: Sequence[str], afters: Afters, known: Collection[str]) -> str | None:
    """Why worker ``name`` with this ``after`` (replacing its entry in ``afters``) can never
    start: names that are no worker, or a cycle through it; None if it can."""
    unknown = [dep for dep in after if dep not in known]
    if unknown:
        return f"no worker named {', '.join(unknown)}"
    loop = _cycle(name, {**afters, name: tuple(after)})
    return f"a cycle: {' -> '.join(loop)}" if loop else None


def _cycle(start: str, afters: Afters) -> list[str] | None:
    """A path from ``start`` back to itself along AFTER, found depth first in the order the
    names are written; None if there is none."""
    path = [start]
    seen = {start}
    stack = [iter(afters.get(start, ()))]
    while stack:
        for dep in stack[-1]:
            if dep == start:
                return [*path, start]
            if dep not in seen:
                seen.add(dep)
                path.append(dep)
                stack.append(iter(afters.get(dep, ())))
                break
        else:
            stack.pop()
            path.pop()
    return None


def waiting_for(after: Sequence[str], ready: Collection[str]) -> list[str]:
    """The workers of ``after`` that are not ready yet, in the order they are written."""
    return [dep for dep in after if dep not in ready]


def dependents(afters: Afters, names: Iterable[str]) -> set[str]:
    """The workers after any of ``names``, directly or through others (``names`` excluded)."""
    after_it = _direct_dependents(afters)
    found: set[str] = set()
    todo = list(names)
    while todo:
        for dependent in after_it.get(todo.pop(), ()):
            if dependent not in found:
                found.add(dependent)
                todo.append(dependent)
    return found - set(names)


def dependencies_first(names: Iterable[str], afters: Mapping[str, Iterable[str]]) -> list[str]:
    """``names`` with each one after those of them it depends on (starts after, imports),
    directly or through others; otherwise in name order. A cycle is broken where it is met,
    at a stable point. Worker start order, and module reload order (``loader.reload_order``)."""
    wanted = set(names)
    found: list[str] = []
    done: set[str] = set()

    def visit(name: str, path: set[str]) -> None:
        if name in done or name in path:
            return
        path.add(name)
        for dep in sorted(afters.get(name, ())):
            visit(dep, path)
        path.discard(name)
        done.add(name)
        if name in wanted:
            found.append(name)

    for name in sorted(wanted):
        visit(name, set())
    return found


def stoppable(queue: Collection[str], afters: Afters, running: Collection[str]) -> list[str]:
    """The workers of ``queue`` (to be stopped) that may be asked now: those after which no
    worker still runs. If every one left is held only by others in ``queue``, they are on a
    cycle and none can go first: all of them may."""
    after_it = _direct_dependents(afters)
    holders = {name: [d for d in after_it.get(name, ()) if d in running] for name in queue}
    free = sorted(name for name, held_by in holders.items() if not held_by)
    if free or not queue:
        return free
    if all(holder in queue for held_by in holders.values() for holder in held_by):
        return sorted(queue)
    return []


def _direct_dependents(afters: Afters) -> dict[str, list[str]]:
    """For each worker, the workers whose AFTER names it."""
    after_it: dict[str, list[str]] = {}
    for name, after in afters.items():
        for dep in after:
            after_it.setdefault(dep, []).append(name)
    return after_it
