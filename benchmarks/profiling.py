"""What the profilers (profile_dqn.py, profile_on_policy.py, profile_off_policy.py) and marl_eval.py share:
loading an algorithm file as a module, and wrapping a function with a timer."""

import importlib.util
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNING = set()  # names whose timer is running now: a nested call of the same name is not counted twice


def load(script: str):
    """algorithms/{script} as a module, without running its command line."""
    spec = importlib.util.spec_from_file_location(script[:-3], ROOT / "algorithms" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(totals: dict, name, function):
    """function, with its wall time added to totals[name] (name may be a callable of the call). A call
    inside another timed call of the same name (get_value inside get_action_and_value) counts once."""

    def wrapper(*args, **kwargs):
        key = name() if callable(name) else name
        if key in RUNNING:
            return function(*args, **kwargs)
        RUNNING.add(key)
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start
            RUNNING.discard(key)

    return wrapper
