"""Scenario files: load and validate (pydantic), expand the matrix into trial specs."""

from harness.scenario.loader import LoadedScenario, load_scenario
from harness.scenario.matrix import (baseline_of, expand, expand_combinations, iter_expand, trial_id,
                                     trial_name)
from harness.scenario.schema import Scenario

__all__ = ["LoadedScenario", "Scenario", "baseline_of", "expand", "expand_combinations", "iter_expand",
           "load_scenario", "trial_id", "trial_name"]
