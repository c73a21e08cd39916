"""YAML that would cost a reader without bound, or crash it, is a one-line error naming the file
and line, for scenarios, claims and prices alike (they share the loader)."""

from __future__ import annotations

import time

import pytest

from harness.cli import main

BOMB = "\n".join(["name: bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
                 + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]) + "\n"


@pytest.mark.parametrize("text, message", [
    (BOMB, "the document expands to more than 100,000 values (aliases count each time they are used)"),
    ("name: deep\nx: " + "[" * 200 + "]" * 200 + "\n", "nested more than 64 levels deep"),
    ("name: ctrl\ndescription: a\x07b\n", "invalid YAML: unacceptable character"),
    ("name: key\n? [a, b]\n: 1\n", "a key must be a plain name, not a list or mapping"),
    ("name: n\nx: " + "[" * 5000 + "]" * 5000 + "\n", "invalid YAML: nested deeper than Python can read"),
])
@pytest.mark.parametrize("command", ["validate", "claims"])
def test_hostile_yaml_is_a_one_line_exit_2_and_quick(tmp_path, capsys, text, message, command):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    argv = ["validate", str(path)] if command == "validate" else ["claims", "--claims", str(path),
                                                                 "--results", str(tmp_path / "r.db")]
    started = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - started < 5
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and message in err
