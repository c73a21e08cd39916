"""Storage: the SQLite results database and its exports."""

from harness.store.db import DEFAULT_RESULTS, ResultStore, RunInfo, utc_now
from harness.store.export import FORMATS, export_trials, flat_frame

__all__ = ["DEFAULT_RESULTS", "FORMATS", "ResultStore", "RunInfo", "export_trials", "flat_frame", "utc_now"]
