"""The suite file's schema (pydantic, strict like a scenario: an unknown key is an error).

A suite is an ordered list of entries run into one results database: scenario files, each
with its own `--set` overrides (and the ones a `--smoke` run adds), and checks of the machine
and the harness (harness.checks). Each entry's label names its report folder.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from harness.scenario.schema import Section

# a folder of its own under the suite's report folder: letters, digits, '-' and '_' (no dots,
# so no label can be a file of the index, 'index.html'); `checks` holds the checks' results
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
RESERVED_LABELS = ("checks",)


def _one_override(item: Any) -> Any:
    if isinstance(item, dict):  # `- train.steps: 3`, or an unquoted value holding ': '
        raise PydanticCustomError(
            "override_is_mapping", "each item is one KEY=VALUE string, not a mapping: write "
            "KEY=VALUE, and quote an item whose value holds ': ' (\"matrix={precision: [bf16]}\")")
    return item


Override = Annotated[str, BeforeValidator(_one_override)]  # KEY=VALUE, as `harness run --set` takes it


class Entry(Section):
    """`{label, scenario, set, smoke_set}` runs a scenario file (its path relative to the suite
    file); `{label, check}` runs one of harness.checks.CHECKS."""

    label: str
    scenario: str | None = None
    check: str | None = None
    set: list[Override] = []
    smoke_set: list[Override] = []  # under --smoke, after `set` and the suite's `smoke`

    @field_validator("label")
    @classmethod
    def _folder_label(cls, label: str) -> str:
        if not LABEL.fullmatch(label):
            raise PydanticCustomError(
                "label_form", "a label is a folder name: 1-64 letters, digits, '-' or '_', starting "
                "with a letter or digit, got {label}", {"label": repr(label)})
        if label in RESERVED_LABELS:
            raise PydanticCustomError("label_reserved", "the label '{label}' is the checks' folder",
                                      {"label": label})
        return label

    @model_validator(mode="after")
    def _one_kind(self) -> "Entry":
        if (self.scenario is None) == (self.check is None):
            raise PydanticCustomError("entry_kind", "an entry has either scenario: PATH or check: NAME")
        if self.check is not None and (self.set or self.smoke_set):
            raise PydanticCustomError("check_with_set", "a check entry takes no set or smoke_set")
        return self


class SuiteFile(Section):
    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    device: Literal["auto", "cpu", "cuda"] = "auto"  # what the suite runs on; --device overrides
    smoke: list[Override] = []  # of every scenario entry under --smoke
    entries: list[Entry] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:  # reports/<name>/ by default
        if not LABEL.fullmatch(name.replace(".", "_")):
            raise PydanticCustomError(
                "suite_name", "the name is a folder name (reports/<name>/): letters, digits, '-', "
                "'_' or '.', got {name}", {"name": repr(name)})
        return name
