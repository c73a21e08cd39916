"""The suite's checks: preflight names what torch.compile lacks, a check in its own process
turns a crash or hang into a failed result, the overhead check's answer survives the trip."""

from __future__ import annotations

import subprocess

import pytest

from harness import checks
from harness.checks import CheckResult, preflight, run_isolated


def test_preflight_without_a_c_compiler_fails_before_compiling(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no compiler on PATH
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(preflight, "compile_once", lambda device: pytest.fail("must not compile"))
    result = preflight.run("cuda")
    assert result.status == "failed"
    assert result.summary.startswith("no C compiler (cc, gcc, clang or $CC): Triton cannot build")
    assert result.figures["c_compiler"] is None


def test_preflight_names_missing_python_headers(monkeypatch, tmp_path):
    monkeypatch.setattr(preflight.sysconfig, "get_paths", lambda: {"include": str(tmp_path / "none")})
    problems, found = preflight.static_problems("cpu")
    assert found["python_header"] is None
    assert problems[-1] == (f"no Python.h under {tmp_path / 'none'}: install the Python development "
                            "headers (python3-dev)")


def test_preflight_reports_a_failing_compile_as_its_reason(monkeypatch):
    def broken(device):
        raise RuntimeError("InductorError: CppCompileError: C++ compile error\nlong log ...")

    monkeypatch.setattr(preflight, "compile_once", broken)
    monkeypatch.setattr(preflight, "static_problems", lambda device: ([], {"cxx_compiler": "/x/c++"}))
    result = preflight.run("cpu")
    assert (result.status, result.summary) == (
        "failed", "torch.compile failed on cpu: RuntimeError: InductorError: CppCompileError: C++ compile error")


def test_cc_names_the_compiler_when_set(monkeypatch, tmp_path):
    compiler = tmp_path / "my-cc"
    compiler.write_text("#!/bin/sh\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("CC", f"{compiler} -O2")
    assert preflight.find_compiler("CC", preflight.C_COMPILERS) == str(compiler)


def test_a_check_result_has_a_known_status():
    with pytest.raises(ValueError, match="check status must be one of ok, failed, skipped, got 'fine'"):
        CheckResult("x", "fine", "")


def test_an_isolated_check_that_hangs_or_crashes_is_a_failed_result(monkeypatch):
    def hangs(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs["timeout"])

    monkeypatch.setattr(checks.subprocess, "run", hangs)
    assert run_isolated("overhead", "cpu", timeout_s=7).summary == "the check did not finish within 7 s"

    crashed = subprocess.CompletedProcess([], 1, stdout="", stderr="Traceback ...\nMemoryError: boom\n")
    monkeypatch.setattr(checks.subprocess, "run", lambda *a, **k: crashed)
    result = run_isolated("overhead", "cpu")
    assert (result.status, result.summary) == ("failed", "the check's process ended with exit 1: MemoryError: boom")


def test_an_isolated_overhead_check_returns_its_ratio():
    result = run_isolated("overhead", "cpu", smoke=True, timeout_s=120)
    assert result.status == "ok", result.summary
    assert result.figures["ratio"] == pytest.approx(result.figures["harness_step_s"] / result.figures["bare_step_s"])
    assert result.summary.startswith(f"harness loop / bare loop = {result.figures['ratio']:.4f}")
