"""Reports of a run: markdown for a pull request, self-contained HTML, matplotlib figures.

`write_report` is imported on first use: the light modules of this package (units, tables,
markdown) serve the command line's other commands without loading matplotlib and the
report's whole content pipeline."""

__all__ = ["write_report"]


def __getattr__(name: str):
    if name == "write_report":
        from harness.report.writer import write_report

        return write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
