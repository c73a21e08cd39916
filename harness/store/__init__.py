"""Storage: the SQLite results database, its exports, and imports of exports."""

from harness.store.db import DEFAULT_RESULTS, ResultStore, RunInfo, utc_now
from harness.store.export import FORMATS, export_trials, flat_frame
from harness.store.merge import ImportSummary, import_trials, open_results, read_export

__all__ = ["DEFAULT_RESULTS", "FORMATS", "ImportSummary", "ResultStore", "RunInfo", "export_trials",
           "flat_frame", "import_trials", "open_results", "read_export", "utc_now"]
