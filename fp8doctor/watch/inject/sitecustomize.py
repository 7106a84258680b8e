"""Injected by `fp8doctor watch` (its directory is prepended to PYTHONPATH for the watched command only).

Starts fp8doctor's observer when FP8DOCTOR_WATCH_DIR is set, then runs the sitecustomize this one shadows, if any,
so the user's own site customisation still happens. Standard library only: processes that never import
accelerate stay as cheap as without it.
"""


def _start_observer() -> None:
    import contextlib
    import os
    import sys

    if not os.environ.get("FP8DOCTOR_WATCH_DIR"):
        return
    try:
        from fp8doctor.watch import observer
    except ImportError:
        # A different interpreter than fp8doctor's: reach the package next to this file, last on the path.
        root = os.environ.get("FP8DOCTOR_WATCH_ROOT")
        if not root:
            return
        sys.path.append(root)
        try:
            from fp8doctor.watch import observer
        except ImportError:
            return
    with contextlib.suppress(Exception):  # observing must never stop the watched command
        observer.install()


def _chain_shadowed() -> None:
    import importlib.machinery
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or os.path.abspath(spec.origin or "") == os.path.abspath(__file__):
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_start_observer()
_chain_shadowed()
