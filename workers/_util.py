"""A helper: modules starting with "_" are imported by workers, never run as workers."""


def greeting(count: int) -> str:
    return f"tick {count}"
