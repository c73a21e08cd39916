"""Can torch.compile build kernels on this machine? Inductor compiles C++ for a CPU and Triton
builds each kernel's launcher with a C compiler against Python's headers, into a cold cache
per trial: without either, every compiled trial of a sweep fails minutes in. This check finds
that out first, in seconds: the compiler on PATH (or $CC / $CXX), Python.h, and then one tiny
function actually compiled on the device in a throw-away cache."""

from __future__ import annotations

import os
import shutil
import sysconfig
import tempfile
import time
from pathlib import Path

from harness.checks.result import CheckResult

C_COMPILERS = ("cc", "gcc", "clang")
CXX_COMPILERS = ("c++", "g++", "clang++")


def find_compiler(env_var: str, names: tuple[str, ...]) -> str | None:
    """$CC/$CXX when it names an executable, else the first of `names` on PATH."""
    chosen = os.environ.get(env_var)
    if chosen:
        return shutil.which(chosen.split()[0])
    return next((found for name in names if (found := shutil.which(name))), None)


def python_header() -> Path | None:
    include = sysconfig.get_paths().get("include")
    header = Path(include) / "Python.h" if include else None
    return header if header is not None and header.is_file() else None


def static_problems(device: str) -> tuple[list[str], dict[str, str | None]]:
    """What is missing for `device`'s compiler backend, and what was found."""
    found = {"c_compiler": find_compiler("CC", C_COMPILERS),
             "cxx_compiler": find_compiler("CXX", CXX_COMPILERS),
             "python_header": str(python_header() or "") or None}
    problems = []
    if device == "cuda" and found["c_compiler"] is None:
        problems.append("no C compiler (cc, gcc, clang or $CC): Triton cannot build its kernel launchers")
    if device == "cpu" and found["cxx_compiler"] is None:
        problems.append("no C++ compiler (c++, g++, clang++ or $CXX): inductor cannot build CPU kernels")
    if found["python_header"] is None:
        problems.append(f"no Python.h under {sysconfig.get_paths().get('include')}: install the Python "
                        "development headers (python3-dev)")
    return problems, found


def compile_once(device: str) -> float:
    """Seconds to compile and run one small function on `device`, in a private cold cache."""
    import torch

    with tempfile.TemporaryDirectory(prefix="harness-preflight-") as cache:
        saved = {key: os.environ.get(key) for key in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        os.environ["TRITON_CACHE_DIR"] = os.path.join(cache, "triton")
        try:
            torch._dynamo.reset()
            start = time.perf_counter()
            x = torch.arange(1024, dtype=torch.float32, device=device)
            y = torch.compile(lambda t: torch.relu(t * 2.0 - 1.0).sum())(x)
            expected = float(torch.relu(x * 2.0 - 1.0).sum())
            if abs(float(y) - expected) > 1e-3 * max(1.0, abs(expected)):
                raise RuntimeError(f"the compiled function returned {float(y)}, eager {expected}")
            return time.perf_counter() - start
        finally:
            torch._dynamo.reset()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def run(device: str, smoke: bool = False) -> CheckResult:
    problems, found = static_problems(device)
    if problems:
        return CheckResult("preflight", "failed", "; ".join(problems), found)
    try:
        seconds = compile_once(device)
    except Exception as err:  # the point of the check: say why compiling fails, go on
        line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return CheckResult("preflight", "failed",
                           f"torch.compile failed on {device}: {err.__class__.__name__}: {line}"[:400], found)
    compiler = found["c_compiler"] if device == "cuda" else found["cxx_compiler"]
    return CheckResult("preflight", "ok",
                       f"torch.compile works on {device} ({compiler}, {found['python_header']}); "
                       f"a cold compile of one small function took {seconds:.1f} s",
                       {**found, "cold_compile_s": round(seconds, 3)})
