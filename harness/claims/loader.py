"""Read the claims file: YAML with line numbers, pydantic validation, and a check that each
claim names a scenario file that exists and selectors that are real axes or fields.

Every problem is one `InputError` naming the file, the line and the dotted field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from harness.claims.schema import Claim, ClaimsFile
from harness.errors import InputError, did_you_mean
from harness.files import as_typed
from harness.scenario.loader import _line_of, read_yaml_mapping, validation_error
from harness.scenario.schema import matrix_axes

DEFAULT_CLAIMS = Path(__file__).resolve().parents[2] / "scenarios" / "claims.yaml"


@dataclass(frozen=True)
class LoadedClaim:
    claim: Claim
    scenario_name: str | None  # the `name` inside the claim's scenario file
    scenario_path: str | None  # as a user would type it, for "run this to test it"


def default_claims_path() -> Path:
    """The shipped claims file, beside the shipped scenarios of this checkout."""
    return DEFAULT_CLAIMS


def load_claims(path: str | Path) -> list[LoadedClaim]:
    from harness.scenario import load_scenario  # the scenario package imports much; only here

    path = Path(path)
    _, data, lines = read_yaml_mapping(path, "a claims file is a mapping with one key, claims: a list")
    try:
        parsed = ClaimsFile.model_validate(data)
    except ValidationError as err:
        raise validation_error(err, str(path), lines, ()) from None

    known = set(matrix_axes())
    loaded: list[LoadedClaim] = []
    first_line: dict[str, int | None] = {}
    for index, claim in enumerate(parsed.claims):
        where = ("claims", index)
        if claim.id in first_line:
            raise InputError(f"claim id '{claim.id}' appears twice (first at line "
                             f"{first_line[claim.id]})", file=str(path),
                             line=_line_of(lines, where + ("id",)), field=f"claims.{index}.id")
        first_line[claim.id] = _line_of(lines, where + ("id",))
        for side in ("baseline", "treatment"):
            for key in getattr(claim, side) or {}:
                if key not in known:
                    raise InputError(f"unknown axis or field '{key}'{did_you_mean(key, known)}",
                                     file=str(path), line=_line_of(lines, where + (side, key)),
                                     field=f"claims.{index}.{side}.{key}")
        name = shown = None
        if claim.scenario is not None:
            scenario_file = (path.parent / claim.scenario).resolve()
            if not scenario_file.is_file():
                raise InputError(f"no scenario file '{claim.scenario}' beside the claims file",
                                 file=str(path), line=_line_of(lines, where + ("scenario",)),
                                 field=f"claims.{index}.scenario")
            name = load_scenario(scenario_file).scenario.name
            shown = as_typed(scenario_file)
        loaded.append(LoadedClaim(claim, name, shown))
    return loaded
