"""Read a suite file: YAML with line numbers, pydantic validation, and every scenario entry
loaded with its overrides, so that a bad override or a missing file fails before anything runs.

Both forms of each entry are loaded: as it runs (`set`) and, where the suite gives smoke
overrides, as `--smoke` runs it (`set`, the suite's `smoke`, the entry's `smoke_set`, on the
CPU), so a smoke override that no longer fits its scenario is found on any machine, not first
in CI (a suite without smoke overrides is not held to fitting the CPU unless run --smoke).
Every problem is one InputError naming the suite file, the line and the dotted field, and,
for a scenario's own complaint, the entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from harness.errors import InputError, did_you_mean
from harness.files import as_typed
from harness.scenario.loader import Loc, LoadedScenario, _line_of, read_yaml_mapping, validation_error
from harness.suite.schema import Entry, SuiteFile

Override = tuple[str, Loc]  # the KEY=VALUE item and where the suite file gives it


@dataclass(frozen=True)
class SuiteEntry:
    index: int
    label: str
    check: str | None  # a check entry: the name in harness.checks.CHECKS
    scenario_path: str | None  # a scenario entry: the file, as a user here would type it
    overrides: tuple[str, ...] = ()  # the ones this run applies, in order
    loaded: LoadedScenario | None = None

    @property
    def is_check(self) -> bool:
        return self.check is not None


@dataclass(frozen=True)
class LoadedSuite:
    suite: SuiteFile
    path: str
    smoke: bool
    entries: tuple[SuiteEntry, ...]
    lines: dict[Loc, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.suite.name

    def scenarios(self) -> list[SuiteEntry]:
        return [entry for entry in self.entries if not entry.is_check]

    def checks(self) -> list[SuiteEntry]:
        return [entry for entry in self.entries if entry.is_check]

    def resolve_device(self, requested: str | None) -> str:
        """cpu or cuda: `requested` (an option), else the suite file's `device`; a device that
        is not here is an InputError naming whichever asked for it."""
        from harness import hardware

        try:
            return hardware.resolve_device(requested or self.suite.device)
        except InputError as err:
            if requested is not None:
                raise
            raise InputError(err.message, file=self.path, line=_line_of(self.lines, ("device",)),
                             field="device") from None


def load_suite(path: str | Path, *, smoke: bool = False, device: str | None = None) -> LoadedSuite:
    """The suite at `path`, every entry checked in both of its forms. `device` (auto, cpu or
    cuda; default the suite's own) is what the scenarios are loaded for; --smoke loads for the CPU."""
    path = Path(path)
    _, data, lines = read_yaml_mapping(path, "a suite is a mapping of keys (name, entries, ...)")
    try:
        suite = SuiteFile.model_validate(data)
    except ValidationError as err:
        raise validation_error(err, str(path), lines, ()) from None
    _check_labels(suite, str(path), lines)
    device = device or suite.device
    entries = []
    for index, entry in enumerate(suite.entries):
        if entry.check is not None:
            _check_name(entry, index, str(path), lines)
            entries.append(SuiteEntry(index, entry.label, entry.check, None))
            continue
        scenario = _scenario_file(entry, index, path, lines)
        normal = _load(scenario, entry, index, _normal(entry, index), device, str(path), lines)
        chosen = normal
        if smoke or suite.smoke or entry.smoke_set:  # a smoke form of its own: checked too
            smoked = _load(scenario, entry, index, _smoke(suite, entry, index), "cpu", str(path), lines)
            chosen = smoked if smoke else normal
        entries.append(SuiteEntry(index, entry.label, None, as_typed(scenario),
                                  chosen.overrides, chosen))
    return LoadedSuite(suite, str(path), smoke, tuple(entries), lines)


def _normal(entry: Entry, index: int) -> list[Override]:
    return [(item, ("entries", index, "set", k)) for k, item in enumerate(entry.set)]


def _smoke(suite: SuiteFile, entry: Entry, index: int) -> list[Override]:
    return (_normal(entry, index) + [(item, ("smoke", k)) for k, item in enumerate(suite.smoke)]
            + [(item, ("entries", index, "smoke_set", k)) for k, item in enumerate(entry.smoke_set)])


def _check_labels(suite: SuiteFile, path: str, lines: dict[Loc, int]) -> None:
    first: dict[str, int] = {}
    for index, entry in enumerate(suite.entries):
        where = ("entries", index, "label")
        if entry.label in first:
            raise InputError(f"label '{entry.label}' appears twice (first at line "
                             f"{_line_of(lines, ('entries', first[entry.label], 'label'))}): each "
                             "entry's report gets a folder of that name", file=path,
                             line=_line_of(lines, where), field=".".join(map(str, where)))
        first[entry.label] = index


def _check_name(entry: Entry, index: int, path: str, lines: dict[Loc, int]) -> None:
    from harness import checks  # imports torch: only once the file itself is sound

    if entry.check not in checks.CHECKS:
        where = ("entries", index, "check")
        raise InputError(f"unknown check '{entry.check}'{did_you_mean(entry.check, checks.CHECKS)} "
                         f"(known: {', '.join(sorted(checks.CHECKS))})", file=path,
                         line=_line_of(lines, where), field=".".join(map(str, where)))


def _scenario_file(entry: Entry, index: int, suite_path: Path, lines: dict[Loc, int]) -> Path:
    """The entry's scenario file, relative to the suite file."""
    given = Path(entry.scenario).expanduser()
    scenario = given if given.is_absolute() else (suite_path.parent / given).resolve()
    if not scenario.is_file():
        where = ("entries", index, "scenario")
        raise InputError(f"no scenario file '{entry.scenario}' (looked for {scenario}; paths are "
                         "relative to the suite file)", file=str(suite_path),
                         line=_line_of(lines, where), field=".".join(map(str, where)))
    return scenario


def _load(scenario: Path, entry: Entry, index: int, overrides: list[Override], device: str,
          path: str, lines: dict[Loc, int]) -> LoadedScenario:
    from harness.scenario import load_scenario

    items = [item for item, _ in overrides]
    try:
        return load_scenario(as_typed(scenario), items, device=device)
    except InputError as err:
        culprit = _culprit(err, overrides)
        where = culprit[1] if culprit else ("entries", index, "scenario")
        raise InputError(f"entry '{entry.label}': {err}", file=path, line=_line_of(lines, where),
                         field=".".join(map(str, where))) from None


_FROM_SET = re.compile(r"\(from --set (.*)\)$")


def _culprit(err: InputError, overrides: list[Override]) -> Override | None:
    """The override an error of load_scenario is about: the one it quotes, or the one whose key
    its `--set KEY` field names."""
    quoted = _FROM_SET.search(err.message)
    if quoted:
        return next((o for o in overrides if o[0] == quoted.group(1)), None)
    field = err.field or ""
    if field == "--set":  # not KEY=VALUE at all: the message quotes the item
        return next((o for o in overrides if f"'{o[0]}'" in err.message), None)
    if field.startswith("--set "):
        key = field.removeprefix("--set ")
        return next((o for o in overrides if o[0].partition("=")[0].strip() == key), None)
    return None
