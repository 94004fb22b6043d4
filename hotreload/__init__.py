"""hotreload: a hot-reloading, in-process worker host.

Workers are modules in a folder defining ``run(ctx)``; each runs in a thread of one host
process, is restarted with jittered backoff when it crashes, and is swapped in place with
``importlib.reload`` when its file is saved. See the README for the worker contract.
"""
__all__: list[str] = []
