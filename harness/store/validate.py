"""What an exported trial must look like before `harness import` stores it: typed models
(pydantic) of the export's trial object and of the TrialSpec inside it, so a garbled export is
one line naming the file, the trial and the field, and nothing reaches the database that the
readers (history, compare, report, export) cannot read back.

One trial has one id: the export's top-level `trial_id` must equal its `spec.trial_id`, which is
the key the store writes under.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, model_validator

from harness.errors import InputError
from harness.spec import STATUSES

# a stored figure: a number, or the string JSON carries a non-finite one as ("inf", "nan")
Figure = float | Literal["inf", "-inf", "nan", "Infinity", "-Infinity", "NaN"] | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ExportedSpec(_Strict):
    """harness.spec.TrialSpec's fields, typed."""

    scenario: StrictStr
    trial_id: StrictStr = Field(min_length=1)
    name: StrictStr
    params: dict[str, Any]
    model: dict[str, Any]
    data: dict[str, Any]
    train: dict[str, Any]
    techniques: dict[str, Any]
    device: StrictStr
    timeout_s: float = Field(gt=0)
    kind: StrictStr = "train"
    kind_settings: dict[str, Any] = Field(default_factory=dict)


class ExportedWarning(_Strict):
    code: StrictStr
    message: StrictStr


class ExportedRun(BaseModel):
    """The run's facts a trial object carries (`run`)."""

    model_config = ConfigDict(extra="ignore")

    description: StrictStr | None = None
    scenario_path: StrictStr | None = None
    device: StrictStr | None = None
    baseline: dict[str, Any] | None = None
    planned_trials: StrictInt | None = Field(default=None, ge=0)
    started_at: StrictStr | None = None
    finished_at: StrictStr | None = None
    overrides: list[StrictStr] | None = None


class ExportedEnv(BaseModel):
    """The environment fingerprint's fields that readers compute with; others pass as they are."""

    model_config = ConfigDict(extra="allow")

    device: StrictStr | None = None
    device_name: StrictStr | None = None
    cpu_model: StrictStr | None = None
    host: StrictStr | None = None
    device_count: StrictInt | None = Field(default=None, ge=0)
    driver: StrictStr | None = None
    torch_cuda: StrictStr | None = None
    git_commit: StrictStr | None = None
    harness_version: StrictStr | None = None
    libraries: dict[str, StrictStr | None] | None = None


class ExportedTrial(BaseModel):
    """One object of a JSON export (harness.store.export.JSON_KEYS); unknown keys are ignored
    (a later harness may add some), known ones must have their type."""

    model_config = ConfigDict(extra="ignore")

    schema_version: StrictInt = 1
    run_id: StrictStr = Field(min_length=1)
    scenario: StrictStr
    trial_id: StrictStr = Field(min_length=1)
    name: StrictStr | None = None
    params: dict[str, Any]
    status: Literal[STATUSES]  # type: ignore[valid-type]
    reason: StrictStr | None = None
    metrics: dict[str, Figure] = Field(default_factory=dict)
    unmeasured: dict[str, StrictStr] = Field(default_factory=dict)
    notes: dict[str, Any] = Field(default_factory=dict)
    warnings: list[ExportedWarning] = Field(default_factory=list)
    traceback: StrictStr | None = None
    started_at: StrictStr | None = None
    finished_at: StrictStr | None = None
    scenario_hash: StrictStr | None = None
    harness_version: StrictStr | None = None
    git_commit: StrictStr | None = None
    git_dirty: bool | None = None
    spec: ExportedSpec
    env: ExportedEnv = Field(default_factory=ExportedEnv)
    run: ExportedRun | None = None
    position: StrictInt | None = Field(default=None, ge=0)
    series: dict[str, list[Figure]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_id(self) -> ExportedTrial:
        repeat = self.params.get("repeat", 0)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 0:
            raise ValueError(f"params.repeat must be a whole number 0 or more, got {repeat!r}")
        if self.spec.trial_id != self.trial_id:
            raise ValueError(f"trial_id {self.trial_id!r} differs from spec.trial_id "
                             f"{self.spec.trial_id!r}: a trial has one id")
        return self


def validate_trial(trial: Any, path: str, index: int) -> dict[str, Any]:
    """`trial` checked against ExportedTrial; an InputError naming file, trial and field."""
    which = ""
    if isinstance(trial, dict) and isinstance(trial.get("trial_id"), str):
        which = f" (trial {trial['trial_id'][:80]!r})"
    try:
        ExportedTrial.model_validate(trial)
    except ValidationError as err:
        first = err.errors()[0]
        field = f"[{index}]" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}"
                                       for part in first["loc"])
        raise InputError(" ".join(first["msg"].split()) + which, file=path, field=field) from None
    except RecursionError:
        raise InputError("nested too deeply" + which, file=path, field=f"[{index}]") from None
    return trial
