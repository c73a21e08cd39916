"""Finding a strategy by the name a scenario gives in `techniques.parallel`.

    none | ddp | fsdp | zero1 | zero2 | zero3     the built-ins
    package.module:attr                           a plug-in on the import path
    /path/to/file.py:attr                         a plug-in in a file (absolute path)
    any other name                                an entry point of group `harness.parallel`

`attr` is a Strategy class (built with no arguments), a Strategy instance, or a function with
no arguments returning one. tests/fixtures/example_strategy.py is the worked example.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from harness.hardware import DeviceFacts
from harness.plugins import load_attribute
from harness.parallel.base import Strategy, Techniques
from harness.parallel.fsdp import FSDP
from harness.parallel.replicated import DDP, NoParallel
from harness.parallel.zero import DeepSpeedZero

ENTRY_POINT_GROUP = "harness.parallel"

BUILTINS: dict[str, Callable[[], Strategy]] = {
    "none": NoParallel,
    "ddp": DDP,
    "fsdp": FSDP,
    "zero1": lambda: DeepSpeedZero(1),
    "zero2": lambda: DeepSpeedZero(2),
    "zero3": lambda: DeepSpeedZero(3),
}

FORMS = (f"built-ins: {', '.join(BUILTINS)}; or 'package.module:attr', '/path/file.py:attr', "
         f"or an entry point in group '{ENTRY_POINT_GROUP}'")


def resolve_strategy(name: str) -> Strategy:
    """The strategy `name` stands for. Raises ValueError (one line) for a name that is none
    of the forms above or a plug-in that cannot be loaded, TypeError for a plug-in whose
    object is not a Strategy."""
    if name in BUILTINS:
        return BUILTINS[name]()
    location, sep, attribute = name.rpartition(":")
    if sep and location and attribute:
        return _as_strategy(load_attribute(location, attribute, f"parallel strategy {name!r}"), name)
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            loaded = entry.load()
        except Exception as err:
            raise ValueError(f"parallel strategy {name!r}: entry point {entry.value!r} "
                             f"cannot be imported: {type(err).__name__}: {err}") from err
        return _as_strategy(loaded, name)
    raise ValueError(f"unknown parallel strategy {name!r}; {FORMS}")


def parallel_unsupported_reason(techniques: Techniques, facts: DeviceFacts) -> str | None:
    """Why the trial's strategy cannot run here, or None. A plug-in that cannot even be loaded
    is a reason too (the trial is skipped with it), not a crash of the sweep."""
    try:
        strategy = resolve_strategy(techniques["parallel"])
    except (ValueError, TypeError) as err:
        return str(err)
    try:
        return strategy.unsupported_reason(techniques, facts)
    except Exception as err:  # a plug-in's bug costs its own trials, not the sweep
        return (f"parallel strategy {strategy.name!r}: unsupported_reason failed: "
                f"{type(err).__name__}: {err}")


def _as_strategy(obj: Any, name: str) -> Strategy:
    """A Strategy from what the plug-in names: the instance itself, or what calling the class
    or factory returns."""
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, Strategy)):
        try:
            obj = obj()
        except TypeError as err:
            raise TypeError(f"parallel strategy {name!r}: cannot be built without arguments: "
                            f"{err}") from err
    if not isinstance(obj, Strategy):
        raise TypeError(f"parallel strategy {name!r} gave a {type(obj).__name__}, which lacks "
                        "the Strategy protocol (name, unsupported_reason, parallelize)")
    return obj
