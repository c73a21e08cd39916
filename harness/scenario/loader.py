"""Read a scenario file: YAML with line numbers, `--set` overrides, pydantic validation.

Every problem becomes one `InputError` naming the file, the line and the dotted field.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harness.errors import InputError
from harness.scenario.schema import Scenario

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    path: str
    file_hash: str  # sha256 of the file's bytes and of the overrides applied to it
    overrides: tuple[str, ...] = ()
    lines: dict[Loc, int] = field(default_factory=dict, compare=False, repr=False)

    def line_of(self, loc: Loc) -> int | None:
        return _line_of(self.lines, loc)


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                  device: str = "auto") -> LoadedScenario:
    """The scenario at `path`, checked whole: also that its trials fit this machine when they
    run on `device` (auto, cpu or cuda; auto means CUDA where there is one)."""
    path = Path(path)
    text, data, lines = read_yaml_mapping(path, "a scenario is a mapping of keys (name, model, data, train, ...)")
    for item in overrides:
        _apply_override(data, item)
    _resolve_relative_paths(data, path.parent)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise validation_error(err, str(path), lines, overrides) from None
    digest = hashlib.sha256(text.encode())
    for item in overrides:
        digest.update(b"\0" + item.encode())
    loaded = LoadedScenario(scenario, str(path), digest.hexdigest(), tuple(overrides), lines)
    from harness.scenario.matrix import check_matrix  # matrix imports this module's types

    return check_matrix(loaded, device)  # the same scenario, matrix values coerced to their fields' types


def read_yaml_mapping(path: Path, expected: str, field: str | None = None
                      ) -> tuple[str, dict, dict[Loc, int]]:
    """A YAML file's text, its top-level mapping and the line of every key; `expected` is
    the error when the document is not a mapping; `field` names the option that gave the path."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", file=str(path), field=field) from None
    except (IsADirectoryError, PermissionError) as err:
        raise InputError(f"cannot read: {err.__class__.__name__}", file=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text: byte 0x{raw[err.start]:02x} ({err.reason})",
                         file=str(path), line=raw.count(b"\n", 0, err.start) + 1) from None
    data, lines = parse_yaml(text, str(path))
    if not isinstance(data, dict):
        raise InputError(expected, file=str(path), line=1)
    return text, data, lines


def parse_yaml(text: str, filename: str) -> tuple[Any, dict[Loc, int]]:
    """The document and the 1-based line of every key and list item in it."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise InputError(f"invalid YAML: {' '.join(str(err.problem or err).split())}", file=filename,
                         line=mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as err:  # a control character: its offset, not a mark
        character = f"#x{err.character:04x}" if isinstance(err.character, int) else repr(err.character)
        raise InputError(f"invalid YAML: unacceptable character {character}: {err.reason}",
                         file=filename,
                         line=text.count("\n", 0, err.position) + 1) from None
    except yaml.YAMLError as err:
        raise InputError(f"invalid YAML: {' '.join(str(err).split())}", file=filename) from None
    except RecursionError:
        raise InputError(f"invalid YAML: nested deeper than Python can read (limit {MAX_DEPTH})",
                         file=filename) from None
    lines: dict[Loc, int] = {}
    if node is not None:  # bounded before anything walks the document's data
        _collect_lines(node, (), lines, filename, [MAX_NODES])
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"invalid YAML: {' '.join(str(err).split())}", file=filename) from None
    except ValueError as err:  # PyYAML's own date parser: an unquoted 2024-02-30
        raise InputError(f"invalid YAML: {err}", file=filename,
                         line=_line_of_bad_date(node)) from None
    return data, lines


def _line_of_bad_date(node: yaml.Node | None) -> int | None:
    """The line of the first scalar PyYAML reads as a date but cannot construct."""
    pending = [node] if node is not None else []
    while pending:
        item = pending.pop(0)
        if isinstance(item, yaml.ScalarNode) and item.tag == "tag:yaml.org,2002:timestamp":
            try:
                yaml.SafeLoader("").construct_yaml_timestamp(item)
            except ValueError:
                return item.start_mark.line + 1
        elif isinstance(item, yaml.SequenceNode):
            pending.extend(item.value)
        elif isinstance(item, yaml.MappingNode):
            pending.extend(part for pair in item.value for part in pair)
    return None


# A scenario, claims or prices file is small: these bound what a hostile one can cost. Aliases
# count every time they are used, since whatever reads the data walks them every time.
MAX_NODES = 100_000
MAX_DEPTH = 64


def _collect_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int], filename: str,
                   budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise InputError(f"the document expands to more than {MAX_NODES:,} values (aliases "
                         "count each time they are used)", file=filename,
                         line=node.start_mark.line + 1)
    if len(loc) > MAX_DEPTH:
        raise InputError(f"nested more than {MAX_DEPTH} levels deep", file=filename,
                         line=node.start_mark.line + 1)
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise InputError("a key must be a plain name, not a list or mapping", file=filename,
                                 line=key_node.start_mark.line + 1)
            key = key_node.value
            if key in seen:  # PyYAML silently keeps the last one; a strict file may not repeat
                raise InputError(f"duplicate key '{key}'", file=filename,
                                 line=key_node.start_mark.line + 1,
                                 field=".".join(map(str, loc + (key,))))
            seen.add(key)
            lines[loc + (key,)] = key_node.start_mark.line + 1
            _collect_lines(value_node, loc + (key,), lines, filename, budget)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, loc + (index,), lines, filename, budget)


def _line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of the deepest part of `loc` that the file spells out."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]] if end else None
    return None


def override_behind(field: str, overrides: tuple[str, ...] | list[str]) -> str | None:
    """The `--set KEY=VALUE` that wrote the dotted `field` (or a part of it), if any: its
    problem is then on the command line, not on a line of the file."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        if field == key or field.startswith(key + ".") or key.startswith(field + "."):
            return item
    return None


def _apply_override(data: dict, item: str) -> None:
    """`--set model.preset=tiny`: the value is parsed as YAML (`[fp32, bf16]`, `3e-4`, `true`)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise InputError(f"expected KEY=VALUE, got '{item}'", field="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise InputError(f"cannot parse the value '{raw}'", field=f"--set {key}") from None
    parts = key.strip().split(".")
    if parts[0] in ("matrix", "baseline") and len(parts) > 2:  # a dotted axis: matrix.model.preset
        parts = [parts[0], ".".join(parts[1:])]
    target = data
    for part in parts[:-1]:
        child = target.get(part)
        if child is None:
            child = target[part] = {}
        if not isinstance(child, dict):
            raise InputError(f"'{part}' is not a section", field=f"--set {key}")
        target = child
    target[parts[-1]] = value


def _resolve_relative_paths(data: dict, base: Path) -> None:
    """Paths in a scenario are relative to the scenario file, not to the working directory."""
    def resolve(value: Any, is_arch: bool) -> Any:
        if not isinstance(value, str) or (is_arch and ".py:" not in value):
            return value
        file, attr = value.rpartition(":")[::2] if is_arch else (value, None)
        path = Path(file).expanduser()
        path = path if path.is_absolute() else (base / path).resolve()
        return f"{path}:{attr}" if is_arch else str(path)

    # (section, key, matrix axis, is an import path): a plug-in file is a path too
    for section, key, axis, is_import in (("data", "path", "data.path", False),
                                          ("model", "arch", "model.arch", True),
                                          ("techniques", "parallel", "parallel", True)):
        fields = data.get(section)
        if isinstance(fields, dict) and key in fields:
            fields[key] = resolve(fields[key], is_import)
        matrix = data.get("matrix")
        values = matrix.get(axis) if isinstance(matrix, dict) else None
        if isinstance(values, list):
            matrix[axis] = [resolve(v, is_import) for v in values]


def validation_error(err: ValidationError, filename: str, lines: dict[Loc, int],
                 overrides: tuple[str, ...]) -> InputError:
    first = err.errors(include_url=False)[0]
    loc: Loc = tuple(first["loc"])
    ctx = first.get("ctx") or {}
    if first["type"] in ("unknown_key", "bool_for_number"):  # raised for the section, about a key
        loc = loc + (ctx["key"],)
    if first["type"] == "section_without_kind":
        loc = (ctx["section"],)
    message = first["msg"]
    if first["type"] == "missing":
        message = "required field is missing"
    if first["type"].startswith("literal_error") or first["type"] == "enum":
        message = f"{message}, got {first.get('input')!r}"
    field = ".".join(map(str, loc)) or "(top level)"
    item = override_behind(field, overrides)
    if item is not None:
        return InputError(message + f" (from --set {item})", file=filename, field=field)
    line = _line_of(lines, loc)
    if line is None and first["type"] == "missing":  # a required top-level key: where the
        line = lines.get(())                          # mapping it belongs in starts
    return InputError(message, file=filename, line=line, field=field)
