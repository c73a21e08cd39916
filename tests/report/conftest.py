"""Session fixtures of the report tests: one fixture store, one report written from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_fixture_store import RUN_ID, build_store

from harness.store import ResultStore


@pytest.fixture(scope="session")
def fixture_store(tmp_path_factory: pytest.TempPathFactory) -> ResultStore:
    return build_store(tmp_path_factory.mktemp("store") / "results.db")


@pytest.fixture(scope="session")
def written_report(fixture_store: ResultStore, tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[Path, Path]:
    from harness.report import write_report

    return write_report(fixture_store, RUN_ID, tmp_path_factory.mktemp("report"))
