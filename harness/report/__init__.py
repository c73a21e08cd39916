"""Reports of a run: markdown for a pull request, self-contained HTML, matplotlib figures."""

from harness.report.writer import write_report

__all__ = ["write_report"]
