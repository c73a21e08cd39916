"""Shared helpers: tiny scenario files written into a test's temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

FIXTURES = Path(__file__).parent / "fixtures"

TINY = {
    "model": {"arch": "gpt", "preset": "tiny"},
    "data": {"kind": "synthetic", "seq_len": 32},
    "train": {"micro_batch_size": 4, "steps": 6, "warmup_steps": 1, "eval_batches": 1},
}


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Keep the measured CPU peak (harness.peaks) out of the user's ~/.cache: one temporary
    cache for the whole session, so it is measured once and workers inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def write_scenario(tmp_path: Path):
    """write_scenario(name, **sections) -> path of a scenario file on the tiny model."""

    def write(name: str, **sections) -> Path:
        document = {"name": name, **TINY}
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(document.get(key), dict):
                document[key] = {**document[key], **value}
            else:
                document[key] = value
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    return write


@pytest.fixture
def faulty():
    """faulty(builder) -> an `arch` import path of a builder in tests/fixtures/faulty_models.py."""
    return lambda builder: f"{FIXTURES / 'faulty_models.py'}:{builder}"
