"""Load what a scenario names by import path: `package.module:attr` or `/abs/file.py:attr`.

Models (`model.arch`) and data-parallel strategies (`parallel`) are plugged in this way.
Relative file paths were made absolute against the scenario file when it was loaded, since
the worker may run in another directory.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


class PluginImportFailed(ValueError):
    """The plug-in's module exists by its name but cannot be imported here (a dependency the
    machine lacks, an error in it): unlike a name that leads nowhere, it may import elsewhere."""


def load_attribute(location: str, attribute: str, what: str) -> Any:
    """`attribute` of the module at `location`; ValueError naming `what` (e.g. "arch 'x'")
    when the module cannot be imported or lacks the attribute."""
    module = _load_file(Path(location), what) if location.endswith(".py") or "/" in location \
        else _import(location, what)
    if not hasattr(module, attribute):
        raise ValueError(f"{what}: {location!r} has no attribute {attribute!r}")
    return getattr(module, attribute)


def _import(name: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as err:  # an ImportError, or whatever the plug-in raised while importing
        raise PluginImportFailed(f"{what}: cannot import {name!r}: {type(err).__name__}: {err}") from err


def _load_file(path: Path, what: str) -> ModuleType:
    if not path.is_absolute():
        raise ValueError(f"{what}: the file path must be absolute")
    if not path.is_file():
        raise ValueError(f"{what}: no such file {str(path)!r}")
    # one module name per path, so two plug-in files of the same name do not collide
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_name = f"_harness_plugin_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{what}: cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before running it, so its dataclasses can find it
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise PluginImportFailed(f"{what}: {path.name} cannot be imported: "
                                 f"{type(err).__name__}: {err}") from err
    return module
