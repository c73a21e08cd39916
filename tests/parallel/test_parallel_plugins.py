"""Plug-in strategies: found by file path, module path and entry point; the worked example
(tests/fixtures/example_strategy.py) trains like DDP on 2 gloo ranks (its no_sync is checked
with DDP's, in test_parallel_ddp_fsdp); every way a plug-in can be wrong is one line naming it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from parallel_ranks import EXAMPLE

from harness.hardware import device_facts
from harness.parallel import Strategy, parallel_unsupported_reason, resolve_strategy

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
        return Minimal()

    NOT_A_STRATEGY = 42
""")


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_strategies.py"
    path.write_text(PLUGIN)
    return path


@pytest.mark.parametrize("attribute", ["Minimal", "INSTANCE", "factory"])
def test_a_plugin_may_name_a_class_an_instance_or_a_factory(plugin_file, attribute):
    strategy = resolve_strategy(f"{plugin_file}:{attribute}")
    assert strategy.name == "minimal"
    assert strategy.unsupported_reason({}, device_facts("cpu")) == "minimal: only a test"


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


def test_a_missing_attribute_and_a_non_strategy_are_named(plugin_file):
    with pytest.raises(ValueError, match="has no attribute 'Missing'"):
        resolve_strategy(f"{plugin_file}:Missing")
    with pytest.raises(TypeError, match="gave a int, which lacks the Strategy protocol"):
        resolve_strategy(f"{plugin_file}:NOT_A_STRATEGY")


def test_a_plugin_that_fails_to_import_is_a_skip_reason_not_a_crash(tmp_path):
    broken = tmp_path / "needs_yafsdp.py"
    broken.write_text("import yafsdp_is_not_installed\n")
    reason = parallel_unsupported_reason({"parallel": f"{broken}:YaFSDP"}, device_facts("cpu"))
    assert "needs_yafsdp.py cannot be imported" in reason
    assert "No module named 'yafsdp_is_not_installed'" in reason
