"""Finding a strategy by the name a scenario gives in `techniques.parallel`.

    none | ddp | fsdp | zero1 | zero2 | zero3     the built-ins
    package.module:Class                          a plug-in on the import path
    /path/to/file.py:Class                        a plug-in in a file (absolute path)
    any other name                                an entry point of group `harness.parallel`

A plug-in names a Strategy class. The runner only imports it (to check the name while
validating, and to skip a trial whose plug-in cannot be imported here); the class is built,
with no arguments, in the worker, which also asks its `unsupported_reason` (a `skipped`
trial). So planning a sweep never runs a plug-in's code beyond its module's import.
tests/fixtures/example_strategy.py is the worked example.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from harness.hardware import DeviceFacts
from harness.plugins import PluginImportFailed, load_attribute
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


class NotAStrategy(ValueError):
    """A name that cannot mean a strategy anywhere: no such form, file or attribute, or an
    object that is not a Strategy class. A validate-time error, unlike a plug-in whose import
    fails (a dependency the machine lacks), which skips its trials."""


class Unsupported(Exception):
    """Raised in the worker when a plug-in's `unsupported_reason` names one: the trial is
    `skipped` with it."""


def resolve_strategy(name: str) -> Strategy:
    """The strategy `name` stands for, built: the worker's call (the runner's for built-ins
    only). Raises NotAStrategy or ValueError (one line), as strategy_class does."""
    if name in BUILTINS:
        return BUILTINS[name]()
    return strategy_class(name)()


def strategy_class(name: str) -> type:
    """The plug-in class `name` stands for, imported, not built. NotAStrategy for a name that
    is none of the forms above or an object that is not a Strategy class; ValueError for a
    module that cannot be imported here."""
    location, sep, attribute = name.rpartition(":")
    if sep and location and attribute:
        try:
            return _as_class(load_attribute(location, attribute, f"parallel strategy {name!r}"), name)
        except PluginImportFailed:
            raise
        except ValueError as err:  # no such file or attribute: a name that leads nowhere
            raise NotAStrategy(str(err)) from None
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            loaded = entry.load()
        except Exception as err:
            raise PluginImportFailed(f"parallel strategy {name!r}: entry point {entry.value!r} "
                                     f"cannot be imported: {type(err).__name__}: {err}") from err
        return _as_class(loaded, name)
    raise NotAStrategy(f"unknown parallel strategy {name!r}; {FORMS}")


def check_strategy_name(name: str) -> str | None:
    """Why `name` can never be a strategy (validate's check), or None. Imports a plug-in's
    module; a module that cannot be imported here is left to the plan (a skip reason)."""
    if name in BUILTINS:
        return None
    try:
        strategy_class(name)
    except NotAStrategy as err:
        return str(err)
    except ValueError:
        return None
    return None


def parallel_unsupported_reason(techniques: Techniques, facts: DeviceFacts) -> str | None:
    """Why the trial's strategy cannot run here, or None: a built-in's own answer; for a
    plug-in, only that it cannot be imported here (the worker asks the plug-in itself)."""
    name = techniques["parallel"]
    if name not in BUILTINS:
        try:
            strategy_class(name)
        except ValueError as err:
            return str(err)
        return None
    return BUILTINS[name]().unsupported_reason(techniques, facts)


def plugin_unsupported_reason(strategy: Strategy, techniques: Techniques, facts: DeviceFacts) -> None:
    """In the worker: raise Unsupported with a plug-in's reason not to run this trial here."""
    try:
        reason = strategy.unsupported_reason(techniques, facts)
    except Exception as err:  # a plug-in's bug costs its own trials, not the sweep
        reason = (f"parallel strategy {strategy.name!r}: unsupported_reason failed: "
                  f"{type(err).__name__}: {err}")
    if reason:
        raise Unsupported(reason)


def _as_class(obj: Any, name: str) -> type:
    """The plug-in's object, which must be a class with the Strategy protocol's members."""
    missing = [member for member in ("name", "unsupported_reason", "parallelize")
               if not hasattr(obj, member)] if isinstance(obj, type) else None
    if missing is None:
        raise NotAStrategy(f"parallel strategy {name!r} names a {type(obj).__name__}, not a class: "
                           "a plug-in names its Strategy class, which the worker builds with no "
                           "arguments")
    if missing:
        raise NotAStrategy(f"parallel strategy {name!r}: class {obj.__name__} lacks "
                           f"{', '.join(missing)} of the Strategy protocol (name, "
                           "unsupported_reason, parallelize)")
    return obj
