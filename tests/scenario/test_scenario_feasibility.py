"""What `harness validate` (and so `run` and `--dry-run`) knows before running: an arch that
is no model, a trial that cannot fit the machine's memory, more ranks than the node has, a
negative seed. Each is exit 2 and one line naming file, line and field.

The machine is replaced (feasibility.this_machine) so that every figure below is exact.
The shipped scenarios validating on the real machine is tests/cli/test_cli_errors.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.scenario import feasibility, load_scenario
from harness.scenario.feasibility import Machine

GiB = 2**30
LAPTOP = Machine(cpu_cores=2, host_memory_bytes=24 * GiB)
ONE_GPU = Machine(cpu_cores=16, host_memory_bytes=128 * GiB, cuda_devices=1,
                  cuda_memory_bytes=16 * GiB, cuda_name="Tesla T4")
TWO_GPUS = Machine(cpu_cores=16, host_memory_bytes=128 * GiB, cuda_devices=2,
                   cuda_memory_bytes=16 * GiB, cuda_name="Tesla T4")
REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in (REPO / "scenarios").glob("*.yaml")
                 if p.name not in ("claims.yaml", "prices.yaml"))


@pytest.fixture
def machine(monkeypatch):
    """machine(facts): the checks see `facts` as this machine (the laptop unless told)."""
    def use(facts: Machine) -> None:
        monkeypatch.setattr(feasibility, "this_machine", lambda: facts)

    use(LAPTOP)
    return use


def validate(capsys, tmp_path: Path, text: str) -> tuple[int, str, Path]:
    path = tmp_path / "s.yaml"
    path.write_text("name: t\n" + text)
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    if code == 0:
        assert err == "" and out.startswith(f"{path}: ok"), (out, err)
        return code, "", path
    lines = err.splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and "Traceback" not in err, err
    return code, lines[0].removeprefix(f"harness: error: {path}:"), path


# ---- model.arch

@pytest.mark.parametrize("arch, message", [
    ("moe", "unknown arch 'moe': expected 'gpt' or an import path 'package.module:builder' or "
            "'file.py:builder'; for a Mixture of Experts set model.n_experts (or a preset: did "
            "you mean 'tiny-moe'?)"),
    ("gpt2", "unknown arch 'gpt2': expected 'gpt' or an import path 'package.module:builder' or "
             "'file.py:builder' (did you mean 'gpt'?)"),
    ("llama", "unknown arch 'llama': expected 'gpt' or an import path 'package.module:builder' or "
              "'file.py:builder'; a family is model.flavour (gpt2 or llama), a size model.preset"),
    ("gpt2-smal", "unknown arch 'gpt2-smal': expected 'gpt' or an import path "
                  "'package.module:builder' or 'file.py:builder'; a size is model.preset (did you "
                  "mean 'gpt2-small'?)"),
    ("my-models:build", "arch 'my-models:build': 'my-models' is not a module name "
                        "('package.module:builder')"),
    ("models:2build", "arch 'models:2build': the builder '2build' after ':' must be a Python name"),
    ("plugins/model:build", "arch 'plugins/model:build': a file plug-in is a .py file "
                            "('path/to/file.py:builder')"),
])
def test_an_arch_that_names_no_model(capsys, tmp_path, machine, arch, message):
    code, line, _ = validate(capsys, tmp_path, f"model: {{arch: '{arch}', preset: tiny}}\n")
    assert (code, line) == (2, f"2: model.arch: {message}")


def test_an_arch_file_that_is_not_there(capsys, tmp_path, machine):
    code, line, _ = validate(capsys, tmp_path, "matrix:\n  model.arch: [gpt, missing.py:build]\n")
    assert (code, line) == (2, f"3: matrix.model.arch.1: no such file '{tmp_path / 'missing.py'}' "
                               "(in trial model.arch=missing.py:build)")


def test_the_valid_arch_forms(capsys, tmp_path, machine):
    (tmp_path / "mine.py").write_text("def build(config): ...\n")
    text = "matrix:\n  model.arch: [gpt, mine.py:build, 'my_pkg.models:build']\n"
    assert validate(capsys, tmp_path, text)[0] == 0  # a module is imported by the worker only


# ---- memory

def test_a_synthetic_vocabulary_too_big_for_host_memory(capsys, tmp_path, machine):
    code, line, _ = validate(capsys, tmp_path, "data: {vocab_size: 100000}\n")
    assert (code, line) == (2, "2: data.vocab_size: the trial needs at least 74.5 GiB (synthetic "
                               "data table 100000^2 x 8 bytes) but this machine has 24.0 GiB of "
                               "host memory (in trial default)")


def test_a_billion_layers(capsys, tmp_path, machine):
    # 1e9 is a string to YAML (1.0e+9 is a float) and so not an int; a billion is refused by size
    assert validate(capsys, tmp_path, "model: {n_layer: 1e9}\n")[1] == (
        "2: model.n_layer: Input should be a valid integer, unable to parse string as an integer")
    code, line, _ = validate(capsys, tmp_path, "model: {preset: tiny, n_layer: 1000000000}\n")
    assert (code, line) == (2, "2: model.n_layer: the trial needs at least 727.4 TiB "
                               "(49,984,000,082,048 parameters x 16 bytes of weights, gradients "
                               "and adamw state) but this machine has 24.0 GiB of host memory "
                               "(in trial default)")


def test_the_field_blamed_is_the_one_that_grew_the_model(capsys, tmp_path, machine):
    text = "model: {preset: gpt2-small, n_layer: 12, d_model: 16384, n_head: 16}\n"
    assert validate(capsys, tmp_path, text)[1].startswith("2: model.d_model: the trial needs ")


def test_each_combination_of_the_matrix_is_checked_and_named(capsys, tmp_path, machine):
    machine(Machine(cpu_cores=2, host_memory_bytes=16 * GiB))
    text = "matrix:\n  model.preset: [tiny, llama-1b]\n  precision: [fp32, bf16-pure]\n"
    code, line, _ = validate(capsys, tmp_path, text)
    # llama-1b in bf16-pure (8 bytes a parameter: 8.2 GiB) fits; with fp32 masters it does not.
    # Its logits (62.5 MiB) count in the total but are under 1% of it: not worth a word
    assert (code, line) == (2, "3: matrix.model.preset.1: the trial needs at least 16.5 GiB "
                               "(1,100,048,384 parameters x 16 bytes of weights, gradients and "
                               "adamw state) but this machine has 16.0 GiB of host memory (in "
                               "trial model.preset=llama-1b precision=fp32)")


def test_a_micro_batch_whose_logits_cannot_fit(capsys, tmp_path, machine):
    code, line, _ = validate(capsys, tmp_path, "train: {micro_batch_size: 100000000}\n")
    assert (code, line) == (2, "2: train.micro_batch_size: the trial needs at least 6.0 TiB "
                               "(logits 100000000 x 128 x 256 x 2 bytes) but this machine has "
                               "24.0 GiB of host memory (in trial default)")


def test_on_a_gpu_the_model_is_measured_against_the_device(capsys, tmp_path, machine):
    machine(ONE_GPU)
    code, line, path = validate(capsys, tmp_path, "model: {preset: gpt2-xl}\n")
    assert (code, line) == (2, "2: model.preset: the trial needs at least 23.3 GiB "
                               "(1,557,611,200 parameters x 16 bytes of weights, gradients and "
                               "adamw state) but its CUDA device (Tesla T4) has 16.0 GiB (in "
                               "trial default)")
    load_scenario(path, device="cpu")  # on this machine's CPU it fits host memory


def test_sharding_over_two_gpus_fits_where_one_does_not(capsys, tmp_path, machine):
    machine(TWO_GPUS)
    text = "model: {preset: gpt2-xl}\ntechniques: {parallel: fsdp, world_size: 2}\n"
    assert validate(capsys, tmp_path, text)[0] == 0


def test_data_ids_beyond_the_models_vocabulary(capsys, tmp_path, machine):
    code, line, _ = validate(capsys, tmp_path, "data: {vocab_size: 1000}\n")
    assert (code, line) == (2, "2: data.vocab_size: the synthetic data has 1000 token ids but "
                               "the model's vocab_size is 256 (in trial default)")
    code, line, _ = validate(capsys, tmp_path, "model: {vocab_size: 64}\ndata: {kind: text, "
                                               "path: corpus.txt}\n")
    assert (code, line) == (2, "2: model.vocab_size: text data is read as bytes (256 token ids) "
                               "but the model's vocab_size is 64 (in trial default)")


def test_an_override_that_asks_too_much_is_named_as_the_override(capsys, tmp_path, machine):
    path = tmp_path / "s.yaml"
    path.write_text("name: t\n")
    assert main(["validate", str(path), "--set", "data.vocab_size=100000"]) == 2
    assert capsys.readouterr().err == (
        f"harness: error: {path}: data.vocab_size: the trial needs at least 74.5 GiB (synthetic "
        "data table 100000^2 x 8 bytes) but this machine has 24.0 GiB of host memory (in trial "
        "default) (from --set data.vocab_size=100000)\n")


# ---- ranks

def test_more_ranks_than_cores(capsys, tmp_path, machine):
    code, line, _ = validate(capsys, tmp_path, "techniques: {parallel: ddp, world_size: 64}\n")
    assert (code, line) == (2, "2: techniques.world_size: 64 ranks per node, but this machine "
                               "has 2 CPU cores (each rank is a process that needs a core; "
                               "world_size counts the ranks of one node, nnodes the nodes)")


def test_more_ranks_than_gpus(capsys, tmp_path, machine):
    machine(ONE_GPU)
    code, line, _ = validate(capsys, tmp_path, "techniques: {parallel: ddp, world_size: 2}\n")
    assert (code, line) == (2, "2: techniques.world_size: 2 ranks per node, but this machine "
                               "has 1 CUDA device (each rank needs a GPU of its own; world_size "
                               "counts the ranks of one node, nnodes the nodes)")


@pytest.mark.parametrize("techniques", [
    "{parallel: ddp, world_size: 2}",  # what the distributed tests run on a 2-core machine
    "{parallel: ddp, world_size: 2, nnodes: 8}",  # only world_size ranks are on this node
])
def test_ranks_that_fit_the_node(capsys, tmp_path, machine, techniques):
    assert validate(capsys, tmp_path, f"techniques: {techniques}\n")[0] == 0


def test_a_sweep_past_the_node_is_left_to_skip_at_run_time(capsys, tmp_path, machine):
    # scenarios/multi_gpu.yaml: world sizes beyond the node are skipped with the reason
    text = "techniques: {parallel: ddp}\nmatrix:\n  world_size: [1, 2, 4, 8]\n"
    assert validate(capsys, tmp_path, text)[0] == 0


def test_a_sweep_where_no_trial_fits(capsys, tmp_path, machine):
    text = "techniques: {parallel: ddp}\nmatrix:\n  world_size: [8, 4]\n"
    code, line, _ = validate(capsys, tmp_path, text)
    assert (code, line) == (2, "4: matrix.world_size.1: no trial fits: the smallest world_size "
                               "is 4 ranks per node, but this machine has 2 CPU cores (each rank "
                               "is a process that needs a core)")


# ---- seeds, and the real machine

@pytest.mark.parametrize("seed, message", [
    ("-1", "Input should be greater than or equal to 0"),
    ("18446744073709551616", "Input should be less than or equal to 18446744073709551615"),
    ("true", "expected a number, got true"),
])
def test_a_seed_numpy_and_torch_cannot_take(capsys, tmp_path, machine, seed, message):
    code, line, _ = validate(capsys, tmp_path, f"train:\n  seed: {seed}\n")
    assert (code, line) == (2, f"3: train.seed: {message}")


def test_the_real_machine_facts():
    facts = feasibility.this_machine()
    assert facts.cpu_cores >= 1 and facts.host_memory_bytes > GiB
    assert (facts.cuda_devices == 0) == (facts.cuda_memory_bytes == 0)


@pytest.mark.parametrize("facts", [LAPTOP, ONE_GPU], ids=["2-cores-24GiB", "one-16GiB-gpu"])
@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_scenarios_fit_a_modest_machine(machine, facts, path):
    machine(facts)
    assert load_scenario(path).path == str(path)  # loaded, not refused


@pytest.mark.parametrize("parallel, message", [
    ("sys:exit", "techniques.parallel: parallel strategy 'sys:exit' names a builtin_function_or_method, "
                 "not a class"),
    ("horovod", "techniques.parallel: unknown parallel strategy 'horovod'; built-ins: none, ddp"),
    ("/no/such/strategy.py:Thing", "techniques.parallel: parallel strategy '/no/such/strategy.py:Thing': "
                                   "no such file '/no/such/strategy.py'"),
])
def test_a_parallel_name_that_is_no_strategy_class_is_refused_at_validate(tmp_path, capsys, parallel,
                                                                          message):
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\nmodel: {{preset: tiny}}\ntechniques:\n  parallel: '{parallel}'\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"harness: error: {path}:4: {message}"), err
