"""The forms `model.arch` takes: 'gpt', or the import path of a builder that takes a GPTConfig
(harness.models.build_model and harness.plugins load them when a trial runs)."""

from __future__ import annotations

import difflib

from harness.errors import did_you_mean

ARCH_FORMS = "expected 'gpt' or an import path 'package.module:builder' or 'file.py:builder'"


def arch_form_problem(arch: str) -> str | None:
    """Why `arch` is none of the forms a model can be named by, or None. A file plug-in's
    path is made absolute when the scenario is loaded; whether the file exists is checked
    with the rest of what the machine must have (feasibility.py)."""
    if arch == "gpt":
        return None
    location, sep, builder = arch.rpartition(":")
    if not sep or not location or not builder:
        return f"unknown arch {arch!r}: {ARCH_FORMS}{_arch_hint(arch)}"
    if not builder.isidentifier():
        return f"arch {arch!r}: the builder {builder!r} after ':' must be a Python name"
    is_file = location.endswith(".py") or "/" in location  # as harness.plugins tells them apart
    if is_file and not location.endswith(".py"):
        return f"arch {arch!r}: a file plug-in is a .py file ('path/to/file.py:builder')"
    if not is_file and not all(part.isidentifier() for part in location.split(".")):
        return f"arch {arch!r}: {location!r} is not a module name ('package.module:builder')"
    return None


def _arch_hint(arch: str) -> str:
    """What someone who wrote a size or a model family in `arch` meant."""
    from harness.models.presets import PRESETS  # deferred: it imports torch

    if did_you_mean(arch, ["gpt"]):
        return did_you_mean(arch, ["gpt"])
    word = arch.lower()
    if "moe" in word or "expert" in word or "mixture" in word:
        moe = [name for name, config in PRESETS.items() if config.n_experts]
        closest = difflib.get_close_matches(word, moe, n=1, cutoff=0) or moe[:1]
        return (f"; for a Mixture of Experts set model.n_experts (or a preset: did you mean "
                f"'{closest[0]}'?)")
    if "llama" in word:
        return "; a family is model.flavour (gpt2 or llama), a size model.preset"
    hint = did_you_mean(arch, PRESETS)
    return f"; a size is model.preset{hint}" if hint else ""
