"""Plug-in strategies: found by file path, module path and entry point; the worked example
(tests/fixtures/example_strategy.py) trains like DDP on 2 gloo ranks (its no_sync is checked
with DDP's, in test_parallel_ddp_fsdp); every way a plug-in can be wrong is one line naming it."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch
from parallel_ranks import EXAMPLE

from harness.hardware import device_facts
from harness.parallel import (Strategy, Unsupported, check_strategy_name, parallel_unsupported_reason,
                              plugin_unsupported_reason, resolve_strategy)
from harness.parallel.registry import NotAStrategy

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_the_example_resolves_by_file_path_and_by_module_path(monkeypatch):
    by_file = resolve_strategy(EXAMPLE)
    monkeypatch.syspath_prepend(str(FIXTURES))
    by_module = resolve_strategy("example_strategy:NaiveAllReduce")
    for strategy in (by_file, by_module):
        assert isinstance(strategy, Strategy)
        assert strategy.name == "naive-allreduce"


def test_the_example_trains_like_ddp(replicated_runs):
    naive, ddp = replicated_runs[EXAMPLE], replicated_runs["ddp"]
    for a, b in zip(naive[0]["params"], naive[1]["params"], strict=True):
        assert torch.equal(a, b)
    # the same arithmetic (the average of two gradients) in another order of operations
    got = torch.cat([p.flatten() for p in naive[0]["params"]])
    want = torch.cat([p.flatten() for p in ddp[0]["params"]])
    assert torch.linalg.vector_norm(got - want) <= 1e-5 * torch.linalg.vector_norm(want)


PLUGIN = textwrap.dedent("""
    class Minimal:
        name = "minimal"
        def unsupported_reason(self, techniques, facts):
            return "minimal: only a test"
        def parallelize(self, model, techniques, precision, make_optimizer, ctx):
            raise NotImplementedError

    INSTANCE = Minimal()

    def factory():
        import os
        os.environ["BUILT"] = "a factory ran"
        return Minimal()

    class Incomplete:
        name = "incomplete"
        def unsupported_reason(self, techniques, facts):
            return None

    NOT_A_STRATEGY = 42
""")


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_strategies.py"
    path.write_text(PLUGIN)
    return path


def test_a_plugin_names_a_class_which_only_the_worker_builds(plugin_file):
    strategy = resolve_strategy(f"{plugin_file}:Minimal")  # the worker's call
    assert strategy.name == "minimal"
    assert strategy.unsupported_reason({}, device_facts("cpu")) == "minimal: only a test"
    with pytest.raises(Unsupported, match="^minimal: only a test$"):
        plugin_unsupported_reason(strategy, {}, device_facts("cpu"))
    # planning imports the plug-in but builds nothing, so its own reason waits for the worker
    assert check_strategy_name(f"{plugin_file}:Minimal") is None
    assert parallel_unsupported_reason({"parallel": f"{plugin_file}:Minimal"}, device_facts("cpu")) is None


@pytest.mark.parametrize("attribute, message", [
    ("INSTANCE", "names a Minimal, not a class"),
    ("factory", "names a function, not a class"),
    ("NOT_A_STRATEGY", "names a int, not a class"),
    ("Incomplete", "class Incomplete lacks parallelize"),
    ("Missing", "has no attribute 'Missing'"),
])
def test_anything_but_a_strategy_class_is_refused_without_calling_it(plugin_file, attribute, message):
    name = f"{plugin_file}:{attribute}"
    assert message in check_strategy_name(name) and "\n" not in check_strategy_name(name)
    with pytest.raises(NotAStrategy, match=message):
        resolve_strategy(name)
    assert "BUILT" not in os.environ  # the factory was never called


def test_sys_exit_is_no_strategy_and_is_never_called():
    assert check_strategy_name("sys:exit") == ("parallel strategy 'sys:exit' names a "
                                               "builtin_function_or_method, not a class: a plug-in "
                                               "names its Strategy class, which the worker builds "
                                               "with no arguments")


def test_a_plugin_registered_as_an_entry_point_resolves_by_its_name(tmp_path, monkeypatch):
    (tmp_path / "my_strategies.py").write_text(PLUGIN)
    dist_info = tmp_path / "my_strategies-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: my-strategies\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(
        "[harness.parallel]\nminimal = my_strategies:Minimal\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_strategy("minimal").name == "minimal"


@pytest.mark.parametrize("name, message", [
    ("horovod",
     "unknown parallel strategy 'horovod'; built-ins: none, ddp, fsdp, zero1, zero2, zero3"),
    ("relative/plugin.py:Thing", "the file path must be absolute"),
    ("/no/such/plugin.py:Thing", "no such file '/no/such/plugin.py'"),
    ("no_such_module_here:Thing", "cannot import 'no_such_module_here'"),
])
def test_a_name_that_leads_nowhere_is_a_one_line_value_error(name, message):
    with pytest.raises(ValueError, match=message) as raised:
        resolve_strategy(name)
    assert "\n" not in str(raised.value)


def test_a_plugin_that_fails_to_import_is_a_skip_reason_not_a_crash(tmp_path):
    broken = tmp_path / "needs_yafsdp.py"
    broken.write_text("import yafsdp_is_not_installed\n")
    reason = parallel_unsupported_reason({"parallel": f"{broken}:YaFSDP"}, device_facts("cpu"))
    assert "needs_yafsdp.py cannot be imported" in reason
    assert "No module named 'yafsdp_is_not_installed'" in reason


@pytest.mark.slow
def test_a_plugins_own_reason_skips_its_trial_from_the_worker(plugin_file, write_scenario, tmp_path):
    from harness.runner import plan, run_scenario
    from harness.scenario import load_scenario
    from harness.store import ResultStore

    loaded = load_scenario(write_scenario("plug", techniques={"parallel": f"{plugin_file}:Minimal"}))
    assert [skip for _, skip in plan(loaded, "cpu")] == [None]  # the runner does not ask it
    store = ResultStore(tmp_path / "r.db")
    trial, = store.trials(run_scenario(loaded, store, "cpu").run_id)
    assert (trial["status"], trial["reason"]) == ("skipped", "minimal: only a test")
