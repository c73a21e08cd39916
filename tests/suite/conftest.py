"""Helpers of the suite tests: a tiny scenario file and suite files beside it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.cli import main

TINY_SCENARIO = """\
name: tiny-a
model: {arch: gpt, preset: tiny}
data: {kind: synthetic, seq_len: 32}
train: {micro_batch_size: 4, steps: 6, warmup_steps: 1, eval_batches: 1}
matrix:  # fp32 only: a trial measures the CPU's peak of its dtype once per test session
  checkpointing: [none, full]
"""


@pytest.fixture
def suite_dir(tmp_path: Path, monkeypatch) -> Path:
    """A folder holding scenarios/tiny.yaml; the test runs there (stray reports/ land in it)."""
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "tiny.yaml").write_text(TINY_SCENARIO)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def write_suite(suite_dir: Path):
    """write_suite(text) -> the path of suites/s.yaml holding the dedented `text`."""

    def write(text: str, name: str = "s.yaml") -> Path:
        path = suite_dir / "suites" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def cli(capsys):
    """cli(*argv) -> (exit code, stdout, stderr) of `harness ARGV`."""

    def call(*argv) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call


@pytest.fixture
def refused(cli):
    """refused(*argv) -> the one error line (without 'harness: error: ') of a command that
    must exit 2."""

    def call(*argv) -> str:
        code, _, err = cli(*argv)
        lines = err.splitlines()
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith("harness: error: "), err
        return lines[0].removeprefix("harness: error: ")

    return call
