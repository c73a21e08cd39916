"""Meters: context managers stacked around the measured window of the training loop."""

from harness.metrics.activations import SavedTensorMeter
from harness.metrics.memory import MemoryMeter
from harness.metrics.readings import Readings
from harness.metrics.timing import StepTimer, StepTimes

__all__ = ["MemoryMeter", "Readings", "SavedTensorMeter", "StepTimer", "StepTimes"]
