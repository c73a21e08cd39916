"""Expand a scenario's matrix into trial specs: cartesian product, minus `exclude`, plus
`include`, times `repeats`. Values and selectors are checked against the schema with the line
of the offending entry."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Iterator
from typing import Any, NoReturn

from pydantic import BaseModel, ValidationError

from harness.errors import InputError, did_you_mean
from harness.scenario.loader import LoadedScenario, Loc, override_behind
from harness.scenario.schema import KINDS, SECTIONS, Scenario, TechniquesSection, matrix_axes
from harness.spec import TrialSpec

Combination = dict[str, Any]


class UnbuildableTrial(ValueError):
    """A combination whose settings cannot be resolved; `field` is the dotted field at fault."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def check_matrix(loaded: LoadedScenario, device: str = "auto") -> LoadedScenario:
    """Raise InputError for an unknown axis, a bad or repeated value, a selector that matches
    nothing, a combination whose resolved model cannot be built, or one that cannot run on
    this machine when trials run on `device` (feasibility.py). Returns `loaded` with every
    matrix, selector and baseline value coerced to its field's type (YAML reads `1e-3` as a
    string; pydantic accepts it as a float, and so must the trials)."""
    scenario = loaded.scenario
    known = matrix_axes()
    if scenario.matrix is not None and not scenario.matrix:
        _fail(loaded, ("matrix",), "matrix is empty: give at least one axis, or leave it out")
    matrix: dict[str, list[Any]] = {}
    for axis, values in (scenario.matrix or {}).items():
        if axis not in known:
            _fail(loaded, ("matrix", axis), f"unknown matrix axis '{axis}'{did_you_mean(axis, known)}")
        section = axis.rpartition(".")[0]
        if section in KINDS.values() and section != KINDS[scenario.kind]:
            kind = next(k for k, s in KINDS.items() if s == section)
            _fail(loaded, ("matrix", axis), f"axis '{axis}' needs kind: {kind} (kind is {scenario.kind})")
        if not values:
            _fail(loaded, ("matrix", axis), "an axis needs at least one value")
        matrix[axis] = []
        for index, value in enumerate(values):
            value = _check_value(loaded, scenario, axis, value, ("matrix", axis, index))
            if value in matrix[axis]:  # two trials with one trial id
                _fail(loaded, ("matrix", axis, index), f"value {value!r} is listed twice")
            matrix[axis].append(value)
    planned = math.prod(len(values) for values in matrix.values()) * scenario.repeats
    if planned > scenario.max_trials:  # counted before a single combination is built
        _fail(loaded, ("matrix",) if matrix else ("repeats",),
              f"the matrix and repeats plan {planned:,} trials, more than max_trials "
              f"({scenario.max_trials:,}); --set max_trials={planned} if you mean it")
    axes = list(matrix)
    selectors: dict[str, Any] = {}
    for key in ("exclude", "include"):
        selectors[key] = [_check_selector(loaded, scenario, axes, selector, (key, index))
                          for index, selector in enumerate(getattr(scenario, key))]
    if scenario.baseline is not None:
        selectors["baseline"] = _check_selector(loaded, scenario, axes, scenario.baseline,
                                                ("baseline",))
    scenario = scenario.model_copy(
        update={"matrix": matrix if scenario.matrix is not None else None, **selectors})
    loaded = dataclasses.replace(loaded, scenario=scenario)
    combinations = expand_combinations(scenario)
    if not combinations:
        _fail(loaded, ("exclude",), "exclude removes every combination: nothing would run")
    if scenario.baseline is not None:
        if not any(_matches(c, scenario.baseline) for c in combinations):
            # `--set matrix.precision=[bf16]` can drop the file's baseline: say so
            shaping = [item for item in loaded.overrides if item.partition("=")[0].strip()
                       .split(".")[0] in ("matrix", "exclude", "include")]
            hint = (f" after --set {', --set '.join(shaping)}"
                    " (--set baseline= compares against the first trial)") if shaping else ""
            _fail(loaded, ("baseline",), "the baseline matches no trial of the matrix" + hint)
    _check_trials(loaded, combinations, device)
    return loaded


def _check_trials(loaded: LoadedScenario, combinations: list[Combination], device: str) -> None:
    """Every combination resolved (a model that cannot be built), then what this machine
    cannot give it (feasibility.py: memory, ranks, a plug-in); one at a time, so a large
    matrix's resolved sections never sit in memory together."""
    from harness.scenario import feasibility

    machine = feasibility.this_machine()
    world_sizes = []
    for combination in combinations:
        try:
            sections = resolve_sections(loaded.scenario, combination)
        except UnbuildableTrial as err:
            _fail_in_trial(loaded, combination, err.field, str(err))
        problem = feasibility.trial_problem(loaded.scenario, combination, sections, machine, device)
        if problem is not None:
            _fail_in_trial(loaded, combination, problem.field, problem.message)
        world_sizes.append(sections["techniques"]["world_size"])
    ranks = feasibility.ranks_problem(loaded.scenario, world_sizes, machine, device)
    if ranks is not None:
        _fail(loaded, ranks.loc, ranks.message)


def _fail_in_trial(loaded: LoadedScenario, combination: Combination, field: str,
                   message: str) -> NoReturn:
    loc = _loc_of_problem(loaded.scenario, combination, field)
    _fail(loaded, loc, f"{message} (in trial {trial_name(combination) or 'default'})")


def expand_combinations(scenario: Scenario) -> list[Combination]:
    axes = scenario.matrix or {}
    names = list(axes)
    combinations = [dict(zip(names, values)) for values in itertools.product(*axes.values())]
    combinations = [c for c in combinations
                    if not any(_matches(c, rule) for rule in scenario.exclude)]
    for extra in scenario.include:
        combination = {axis: extra.get(axis, _default(scenario, axis)) for axis in names}
        if combination not in combinations:
            combinations.append(combination)
    return combinations


def expand(loaded: LoadedScenario, device: str) -> list[TrialSpec]:
    return list(iter_expand(loaded, device))


def iter_expand(loaded: LoadedScenario, device: str) -> Iterator[TrialSpec]:
    """The trial specs one by one, in planned order (a large matrix's --dry-run streams)."""
    scenario = loaded.scenario
    for combination in expand_combinations(scenario):
        sections = resolve_sections(scenario, combination)
        kind_settings = {section: sections.pop(section) for section in KINDS.values() if section}
        settings = kind_settings.get(KINDS[scenario.kind] or "", {})
        for repeat in range(scenario.repeats):
            params = {**combination, "repeat": repeat}
            name = trial_name(combination) or "default"
            if scenario.repeats > 1:
                name += f" #{repeat}"
            yield TrialSpec(
                scenario=scenario.name, trial_id=trial_id(params), name=name, params=params,
                device=device, timeout_s=scenario.timeout_s, kind=scenario.kind,
                kind_settings=settings, **sections)


def resolve_sections(scenario: Scenario, combination: Combination) -> dict[str, dict[str, Any]]:
    """The model, data, train and techniques settings of one combination, fully resolved.
    Raises UnbuildableTrial (a ValueError) naming the field at fault."""
    from harness.models import PRESETS, resolve_config  # deferred: importing torch is slow

    sections = {name: getattr(scenario, name).model_dump() for name in (*SECTIONS, "techniques")}
    for axis, value in combination.items():
        section, _, key = axis.rpartition(".")
        sections[section or "techniques"][key] = value
    for name, cls in {**SECTIONS, "techniques": TechniquesSection}.items():
        try:  # axes are checked one by one; two of them together can still clash
            sections[name] = cls.model_validate(sections[name]).model_dump()
        except ValidationError as err:
            problem = err.errors(include_url=False)[0]
            raise UnbuildableTrial(problem["msg"],
                                   ".".join(map(str, (name, *problem["loc"])))) from None
    model = sections["model"]
    arch, preset = model.pop("arch"), model.pop("preset")
    try:
        config = resolve_config(preset, **{k: v for k, v in model.items() if v is not None})
    except ValueError as err:
        bad_preset = preset is not None and preset not in PRESETS
        raise UnbuildableTrial(str(err), "model.preset" if bad_preset else "model") from None
    sections["model"] = {"arch": arch, **dataclasses.asdict(config)}
    _resolve_second_model(sections, config)
    seq_len, context = sections["data"]["seq_len"], config.max_seq_len
    if seq_len > context:
        raise UnbuildableTrial(f"data.seq_len {seq_len} exceeds the model's max_seq_len {context}",
                               "data.seq_len")
    techniques, train = sections["techniques"], sections["train"]
    if train["global_batch_size"] is not None:
        ranks = techniques["world_size"] * techniques["nnodes"]
        share, rest = divmod(train["global_batch_size"], ranks * techniques["grad_accum"])
        if rest or not share:
            raise UnbuildableTrial(
                f"global_batch_size {train['global_batch_size']} does not split into "
                f"{ranks} ranks x grad_accum {techniques['grad_accum']} equal micro-batches",
                "train.global_batch_size")
        train["micro_batch_size"] = share
    _check_kind(scenario.kind, sections)
    if sections["techniques"]["compile"] is not False and sections["train"]["warmup_steps"] < 1:
        raise UnbuildableTrial("compile needs warmup_steps >= 1: compilation happens in the first "
                               "step, which must not be measured", "train.warmup_steps")
    return sections


INFERENCE_PRECISIONS = ("fp32", "bf16", "fp16")


def _check_kind(kind: str, sections: dict[str, dict[str, Any]]) -> None:
    """What a trial kind needs of the other sections."""
    techniques, model = sections["techniques"], sections["model"]
    if kind != "train":
        ranks = techniques["world_size"] * techniques["nnodes"]
        if ranks > 1 or techniques["parallel"] != "none":
            raise UnbuildableTrial(f"kind {kind} runs on one rank (no data parallelism)",
                                   "techniques.parallel" if ranks == 1 else "techniques.world_size")
    if kind == "grow" and model["arch"] != "gpt":
        raise UnbuildableTrial("kind grow needs arch 'gpt': the growth operator maps its parameters",
                               "model.arch")
    if kind != "inference" and techniques["quantization"] != "none":
        raise UnbuildableTrial("quantization applies to kind: inference", "techniques.quantization")
    if kind == "inference":
        if techniques["precision"] not in INFERENCE_PRECISIONS:
            raise UnbuildableTrial(f"an inference trial loads its weights in one of "
                                   f"{', '.join(INFERENCE_PRECISIONS)}", "techniques.precision")
        settings, seq_len = sections["inference"], sections["data"]["seq_len"]
        if settings["prompt_len"] > seq_len:
            raise UnbuildableTrial(f"inference.prompt_len {settings['prompt_len']} exceeds "
                                   f"data.seq_len {seq_len} (prompts are eval windows)",
                                   "inference.prompt_len")
        if settings["prompt_len"] + settings["decode_tokens"] > model["max_seq_len"]:
            raise UnbuildableTrial("inference.prompt_len + decode_tokens exceeds the model's "
                                   f"max_seq_len {model['max_seq_len']}", "inference.decode_tokens")


def _resolve_second_model(sections: dict[str, dict[str, Any]], config: Any) -> None:
    """The distillation student and the growth's small model: the scenario's model with the
    given fields changed (or a preset with them), fully resolved like the model itself."""
    from harness.models import resolve_config

    for section, key in (("distillation", "student"), ("growth", "small")):
        overrides = sections[section][key]
        preset = overrides.pop("preset")
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            if preset is None:
                second = dataclasses.replace(config, **given)
            else:
                second = resolve_config(preset, **given)
        except ValueError as err:
            raise UnbuildableTrial(str(err), f"{section}.{key}") from None
        sections[section][key] = dataclasses.asdict(second)


def baseline_of(scenario: Scenario) -> Combination | None:
    """The combination every trial is compared to: the scenario's baseline selector, or the
    first combination when none is given."""
    combinations = expand_combinations(scenario)
    if scenario.baseline is None:
        return combinations[0] if combinations else None
    return next((c for c in combinations if _matches(c, scenario.baseline)), None)


def trial_id(params: dict[str, Any]) -> str:
    canonical = json.dumps(params, sort_keys=True, default=str)
    return "t" + hashlib.sha256(canonical.encode()).hexdigest()[:10]


def trial_name(combination: Combination) -> str:
    return " ".join(f"{axis}={_show(value)}" for axis, value in combination.items())


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and "/" in value:  # a file path: its name is enough to tell
        return value.rsplit("/", 1)[1]
    return str(value)


def _matches(combination: Combination, selector: dict[str, Any]) -> bool:
    return all(combination.get(axis) == value for axis, value in selector.items())


def _default(scenario: Scenario, axis: str) -> Any:
    section, _, key = axis.rpartition(".")
    return getattr(getattr(scenario, section or "techniques"), key)


def _check_value(loaded: LoadedScenario, scenario: Scenario, axis: str, value: Any, loc: Loc) -> Any:
    """`value` as the field `axis` holds it, or InputError."""
    section, _, key = axis.rpartition(".")
    cls: type[BaseModel] = SECTIONS[section] if section else TechniquesSection
    current = getattr(scenario, section or "techniques").model_dump()
    try:
        return getattr(cls.model_validate({**current, key: value}), key)
    except ValidationError as err:
        problem = err.errors(include_url=False)[0]
        message = problem["msg"]
        _fail(loaded, loc, message if "got " in message else f"{message}, got {value!r}")


def _check_selector(loaded: LoadedScenario, scenario: Scenario, axes: list[str],
                    selector: dict[str, Any], loc: Loc) -> dict[str, Any]:
    checked = {}
    for axis, value in selector.items():
        if axis not in axes:
            _fail(loaded, loc + (axis,),
                  f"'{axis}' is not an axis of the matrix{did_you_mean(axis, axes)}")
        checked[axis] = _check_value(loaded, scenario, axis, value, loc + (axis,))
    return checked


def _loc_of_problem(scenario: Scenario, combination: Combination, field: str) -> Loc:
    """Where the file sets what makes `combination` unbuildable: the value of the axis that is
    the field at fault, else of an axis in its section (the model's, for data.seq_len too),
    else the field itself."""
    section = field.partition(".")[0]

    def rank(axis: str) -> int | None:
        axis_section = axis.rpartition(".")[0] or "techniques"
        if f"{axis_section}.{axis.rpartition('.')[2]}" == field:
            return 0
        if axis_section == section:
            return 1
        if axis_section == "model" and field == "data.seq_len":
            return 2
        return None

    related = sorted((rank(axis), axis) for axis in combination if rank(axis) is not None)
    if not related:
        return tuple(field.split("."))
    axis = related[0][1]
    values = (scenario.matrix or {}).get(axis, [])
    if combination[axis] in values:
        return ("matrix", axis, values.index(combination[axis]))
    return ("matrix", axis)


def _fail(loaded: LoadedScenario, loc: Loc, message: str) -> NoReturn:
    field = ".".join(map(str, loc))
    item = override_behind(field, loaded.overrides)
    if item is not None:
        raise InputError(message + f" (from --set {item})", file=loaded.path, field=field)
    raise InputError(message, file=loaded.path, line=loaded.line_of(loc), field=field)
