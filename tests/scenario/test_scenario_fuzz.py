"""A corpus of mutated scenario files through `harness validate`: each one is either valid (exit
0) or refused with exactly one stderr line `harness: error: FILE:LINE: ...`, never a traceback.

Every mutation states what it expects; none is allowed "either". The machine is fixed (two
cores, 24 GiB, no GPU) so that the size and rank checks decide the same everywhere."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli import main
from harness.scenario import feasibility

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = (REPO / "scenarios" / "quickstart.yaml").read_text()
MOE = (REPO / "scenarios" / "moe.yaml").read_text()
MACHINE = feasibility.Machine(cpu_cores=2, host_memory_bytes=24 * 2**30)
OK, REFUSED = 0, 2


@dataclass(frozen=True)
class Mutation:
    name: str  # also the file's name
    content: str | bytes
    code: int  # OK or REFUSED; a refusal always names the line at fault


def edit(old: str, new: str, base: str = QUICKSTART) -> str:
    """`base` with its one `old` replaced; a base that changed under the corpus fails loudly."""
    if base.count(old) != 1:
        raise ValueError(f"the base scenario no longer has exactly one {old!r}")
    return base.replace(old, new)


def field_value(field: str, value: str) -> str:
    """Quickstart with one flow-mapping field (`steps: 60`) or top-level key given `value`."""
    match = re.search(rf"(?m)(^|\{{|, ){re.escape(field)}: ([^,}}\n]*)", QUICKSTART)
    if match is None:
        raise ValueError(f"quickstart has no field {field!r}")
    start, end = match.span(2)
    return QUICKSTART[:start] + value + QUICKSTART[end:]


# Every scalar of the file given every kind of wrong value. Only the pairs listed in VALID pass:
# a huge step count, learning rate or empty description are odd but legal.
FIELDS = ["name", "arch", "preset", "kind", "seq_len", "micro_batch_size", "steps",
          "warmup_steps", "lr", "seed", "repeats"]
WRONG = {"list": "[1, 2]", "mapping": "{a: 1}", "empty": "''", "negative": "-7",
         "huge": "99999999999999999999999"}
VALID = {("steps", "huge"), ("lr", "huge")}
GRID = [Mutation(f"{field}-{kind}", field_value(field, value),
                 OK if (field, kind) in VALID else REFUSED)
        for field in FIELDS for kind, value in WRONG.items()]

NESTED = "[" * 70 + "]" * 70
BOMB = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
                 + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)])

HANDWRITTEN = [
    # the document as a whole
    Mutation("empty-file", "", REFUSED),
    Mutation("only-a-comment", "# nothing here\n", REFUSED),
    Mutation("only-a-list", "- name\n- model\n", REFUSED),
    Mutation("only-a-scalar", "quickstart\n", REFUSED),
    Mutation("null-document", "~\n", REFUSED),
    Mutation("truncated-mid-mapping", QUICKSTART[:QUICKSTART.index("warmup_steps")], REFUSED),
    Mutation("truncated-at-a-line", QUICKSTART[:QUICKSTART.index("repeats:")], OK),
    Mutation("truncated-mid-list", QUICKSTART[:QUICKSTART.index("bf16]")], REFUSED),
    Mutation("crlf-line-ends", QUICKSTART.replace("\n", "\r\n"), OK),
    Mutation("byte-order-mark", "\ufeff" + QUICKSTART, OK),
    Mutation("not-utf8", QUICKSTART.encode().replace(b"Tiny GPT", b"Tiny \xff\xfe GPT"), REFUSED),
    Mutation("latin1-description", QUICKSTART.replace("Tiny GPT", "Tiny GPT caf\u00e9").encode("latin-1"),
             REFUSED),
    Mutation("nul-byte", edit("Tiny GPT", "Tiny\x00GPT"), REFUSED),
    Mutation("bell-character", edit("name: quickstart", 'name: "quick\\astart"'), REFUSED),
    Mutation("escape-sequence-in-name", edit("name: quickstart", 'name: "\\e[2Jquick"'), REFUSED),
    Mutation("tab-indentation", edit("  precision: [fp32, bf16]", "\tprecision: [fp32, bf16]"), REFUSED),
    Mutation("tab-in-name", edit("name: quickstart", 'name: "quick\\tstart"'), REFUSED),
    Mutation("unicode-name", edit("name: quickstart", "name: schnell-\u00fcbersicht-\u5feb"), OK),
    Mutation("emoji-description", edit("Tiny GPT", "Tiny GPT \U0001f680"), OK),
    Mutation("zero-width-key", edit("repeats: 3", "repe\u200bats: 3"), REFUSED),
    Mutation("cyrillic-lookalike-key", edit("repeats: 3", "r\u0435peats: 3"), REFUSED),
    Mutation("long-name", edit("name: quickstart", "name: " + "q" * 200), REFUSED),
    Mutation("dots-name", edit("name: quickstart", "name: '..'"), REFUSED),
    Mutation("slash-name", edit("name: quickstart", "name: a/b"), REFUSED),
    Mutation("impossible-date", edit("name: quickstart", "name: 2024-02-30"), REFUSED),
    Mutation("date-as-name", edit("name: quickstart", "name: 2024-02-28"), REFUSED),
    # keys
    Mutation("duplicate-top-level-key", QUICKSTART + "repeats: 5\n", REFUSED),
    Mutation("duplicate-nested-key", edit("preset: tiny}", "preset: tiny, preset: small}"), REFUSED),
    Mutation("unknown-top-level-key", QUICKSTART + "matrx: {precision: [fp32]}\n", REFUSED),
    Mutation("unknown-model-key", edit("preset: tiny}", "preset: tiny, n_layerz: 3}"), REFUSED),
    Mutation("list-as-key", QUICKSTART + "? [a, b]\n: 1\n", REFUSED),
    Mutation("numeric-key", QUICKSTART + "3: three\n", REFUSED),
    # sections of the wrong shape
    Mutation("model-scalar", edit("model: {arch: gpt, preset: tiny}", "model: tiny"), REFUSED),
    Mutation("model-list", edit("model: {arch: gpt, preset: tiny}", "model: [gpt, tiny]"), REFUSED),
    Mutation("model-null", edit("model: {arch: gpt, preset: tiny}", "model:"), REFUSED),
    Mutation("train-scalar", edit("train: {micro_batch_size: 8, steps: 60, warmup_steps: 10, "
                                  "lr: 2.0e-3, seed: 0}", "train: 60"), REFUSED),
    Mutation("deep-nesting", QUICKSTART + f"techniques: {NESTED}\n", REFUSED),
    Mutation("alias-bomb", QUICKSTART + BOMB + "\n", REFUSED),
    Mutation("anchor-and-alias", edit("model: {arch: gpt, preset: tiny}",
                                      "model: &m {arch: gpt, preset: tiny}") + "x: *m\n", REFUSED),
    Mutation("alias-reused-as-a-section", edit("baseline: {precision: fp32, checkpointing: none}",
                                               "baseline: *b").replace(
        "matrix:", "techniques: &b {precision: fp32, checkpointing: none}\nmatrix:"), OK),
    Mutation("merge-key", edit("model: {arch: gpt, preset: tiny}",
                               "model: {<<: {arch: gpt}, preset: tiny}"), OK),
    # values the schema or the model refuses
    Mutation("arch-moe", edit("arch: gpt", "arch: moe"), REFUSED),
    Mutation("arch-missing-file", edit("arch: gpt", "arch: nowhere.py:build"), REFUSED),
    Mutation("arch-bad-module", edit("arch: gpt", "arch: 'my-models:build'"), REFUSED),
    Mutation("arch-module-path", edit("arch: gpt", "arch: 'json:loads'"), OK),
    Mutation("n-layer-float-text", edit("preset: tiny}", "preset: tiny, n_layer: 1e9}"), REFUSED),
    Mutation("n-layer-float", edit("preset: tiny}", "preset: tiny, n_layer: 2.5}"), REFUSED),
    Mutation("n-layer-billion", edit("preset: tiny}", "preset: tiny, n_layer: 1000000000}"), REFUSED),
    Mutation("n-layer-true", edit("preset: tiny}", "preset: tiny, n_layer: true}"), REFUSED),
    Mutation("d-model-not-split-by-heads", edit("preset: tiny}", "preset: tiny, d_model: 65}"), REFUSED),
    Mutation("flavour-unknown", edit("preset: tiny}", "preset: tiny, flavour: bert}"), REFUSED),
    Mutation("n-experts-negative", edit("preset: tiny}", "preset: tiny, n_experts: -1}"), REFUSED),
    Mutation("vocab-too-big-for-memory", edit("seq_len: 128}", "seq_len: 128, vocab_size: 100000}"),
             REFUSED),
    Mutation("vocab-beyond-the-model", edit("seq_len: 128}", "seq_len: 128, vocab_size: 1000}"), REFUSED),
    Mutation("vocab-one", edit("seq_len: 128}", "seq_len: 128, vocab_size: 1}"), REFUSED),
    Mutation("seq-len-beyond-context", edit("seq_len: 128", "seq_len: 4096"), REFUSED),
    Mutation("micro-batch-beyond-memory", edit("micro_batch_size: 8", "micro_batch_size: 100000000"),
             REFUSED),
    Mutation("data-kind-csv", edit("kind: synthetic", "kind: csv"), REFUSED),
    Mutation("text-without-path", edit("kind: synthetic", "kind: text"), REFUSED),
    Mutation("eval-fraction-one", edit("seq_len: 128}", "seq_len: 128, eval_fraction: 1}"), REFUSED),
    Mutation("warmup-not-below-steps", edit("warmup_steps: 10", "warmup_steps: 60"), REFUSED),
    Mutation("steps-fraction", edit("steps: 60", "steps: 60.5"), REFUSED),
    Mutation("steps-whole-float", edit("steps: 60", "steps: 60.0"), OK),
    Mutation("lr-exponent-text", edit("lr: 2.0e-3", "lr: 2e-3"), OK),
    Mutation("lr-word", edit("lr: 2.0e-3", "lr: fast"), REFUSED),
    Mutation("lr-nan", edit("lr: 2.0e-3", "lr: .nan"), REFUSED),
    Mutation("seed-minus-one", edit("seed: 0", "seed: -1"), REFUSED),
    Mutation("seed-past-64-bits", edit("seed: 0", "seed: 18446744073709551616"), REFUSED),
    Mutation("seed-42", edit("seed: 0", "seed: 42"), OK),
    Mutation("repeats-null", edit("repeats: 3", "repeats:"), REFUSED),
    Mutation("repeats-past-max-trials", edit("repeats: 3", "repeats: 100000"), REFUSED),
    Mutation("timeout-negative", QUICKSTART + "timeout_s: -1\n", REFUSED),
    Mutation("timeout-infinite", QUICKSTART + "timeout_s: .inf\n", OK),
    Mutation("max-trials-zero", QUICKSTART + "max_trials: 0\n", REFUSED),
    Mutation("kind-unknown", QUICKSTART + "kind: evaluate\n", REFUSED),
    Mutation("section-without-its-kind", QUICKSTART + "inference: {batch_size: 2}\n", REFUSED),
    Mutation("precision-fp64", QUICKSTART + "techniques: {precision: fp64}\n", REFUSED),
    Mutation("compile-maybe", QUICKSTART + "techniques: {compile: maybe}\n", REFUSED),
    Mutation("checkpointing-every-0", QUICKSTART + "techniques: {checkpointing: every-0}\n", REFUSED),
    Mutation("optimizer-unknown", QUICKSTART + "techniques: {optimizer: adam}\n", REFUSED),
    Mutation("world-size-beyond-cores", QUICKSTART + "techniques: {parallel: ddp, world_size: 64}\n",
             REFUSED),
    Mutation("world-size-two", QUICKSTART + "techniques: {parallel: ddp, world_size: 2}\n", OK),
    Mutation("world-size-two-on-four-nodes",
             QUICKSTART + "techniques: {parallel: ddp, world_size: 2, nnodes: 4}\n", OK),
    Mutation("world-size-zero", QUICKSTART + "techniques: {world_size: 0}\n", REFUSED),
    # the matrix, its selectors and the baseline
    Mutation("matrix-empty", edit("  precision: [fp32, bf16]\n  checkpointing: [none, full]\n",
                                  " {}\n").replace("baseline: {precision: fp32, checkpointing: none}",
                                                   ""), REFUSED),
    Mutation("matrix-list", edit("matrix:\n  precision: [fp32, bf16]\n  checkpointing: [none, full]",
                                 "matrix: [precision, checkpointing]"), REFUSED),
    Mutation("axis-empty-list", edit("checkpointing: [none, full]", "checkpointing: []"), REFUSED),
    Mutation("axis-scalar", edit("checkpointing: [none, full]", "checkpointing: full"), REFUSED),
    Mutation("axis-repeated-value", edit("[fp32, bf16]", "[fp32, fp32]"), REFUSED),
    Mutation("axis-unknown", edit("  checkpointing: [none, full]", "  checkpointing: [none, full]\n"
                                  "  precison: [fp32]"), REFUSED),
    Mutation("axis-nested-list", edit("checkpointing: [none, full]", "checkpointing: [[none], full]"),
             REFUSED),
    Mutation("axis-bad-value", edit("[fp32, bf16]", "[fp32, bf17]"), REFUSED),
    Mutation("axis-dotted-field", edit("  checkpointing: [none, full]",
                                       "  checkpointing: [none, full]\n  train.seed: [0, 1]"), OK),
    Mutation("axis-dotted-bad-value", edit("  checkpointing: [none, full]",
                                           "  checkpointing: [none, full]\n  model.n_layer: [2, -1]"),
             REFUSED),
    Mutation("axis-sweeps-a-huge-model", edit("  checkpointing: [none, full]",
                                              "  checkpointing: [none, full]\n"
                                              "  model.n_layer: [2, 1000000000]"), REFUSED),
    Mutation("axis-world-sizes-all-too-big", edit("  checkpointing: [none, full]",
                                                  "  checkpointing: [none, full]\n"
                                                  "  world_size: [4, 8]") +
             "techniques: {parallel: ddp}\n", REFUSED),
    Mutation("axis-world-sizes-some-too-big", edit("  checkpointing: [none, full]",
                                                   "  checkpointing: [none, full]\n"
                                                   "  world_size: [1, 8]") +
             "techniques: {parallel: ddp}\n", OK),
    Mutation("exclude-scalar", QUICKSTART + "exclude: fp32\n", REFUSED),
    Mutation("exclude-unknown-axis", QUICKSTART + "exclude: [{precison: fp32}]\n", REFUSED),
    Mutation("exclude-everything", QUICKSTART + "exclude: [{precision: fp32}, {precision: bf16}]\n",
             REFUSED),
    Mutation("exclude-one", QUICKSTART.replace("baseline: {precision: fp32, checkpointing: none}",
                                               "exclude: [{precision: bf16, checkpointing: full}]"), OK),
    Mutation("include-one", QUICKSTART + "include: [{precision: fp16, checkpointing: none}]\n", OK),
    Mutation("include-bad-value", QUICKSTART + "include: [{precision: fp99}]\n", REFUSED),
    Mutation("include-mapping", QUICKSTART + "include: {precision: fp16}\n", REFUSED),
    Mutation("baseline-matches-nothing", edit("baseline: {precision: fp32,", "baseline: {precision: fp16,"),
             REFUSED),
    Mutation("baseline-list", edit("baseline: {precision: fp32, checkpointing: none}", "baseline: []"),
             REFUSED),
    # the MoE scenario: a swept preset
    Mutation("moe-as-shipped", MOE, OK),
    Mutation("moe-preset-typo", edit("small-moe8-top2]\n", "small-moe8-top3]\n", MOE), REFUSED),
    Mutation("moe-arch", edit("model: {arch: gpt, preset: small}", "model: {arch: moe, preset: small}",
                              MOE), REFUSED),
    Mutation("moe-baseline-not-an-axis", edit("baseline: {model.preset: small}",
                                              "baseline: {preset: small}", MOE), REFUSED),
]

MUTATIONS = GRID + HANDWRITTEN


def test_the_corpus_is_large_and_every_name_is_unique():
    assert len(MUTATIONS) >= 60
    assert len({m.name for m in MUTATIONS}) == len(MUTATIONS)
    assert {m.code for m in MUTATIONS} == {OK, REFUSED}


@pytest.fixture(autouse=True)
def _fixed_machine(monkeypatch, tmp_path):
    monkeypatch.setattr(feasibility, "this_machine", lambda: MACHINE)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_a_mutated_scenario_is_valid_or_one_line_naming_file_and_line(tmp_path, capsys, mutation):
    path = tmp_path / f"{mutation.name}.yaml"
    if isinstance(mutation.content, bytes):
        path.write_bytes(mutation.content)
    else:
        path.write_text(mutation.content, encoding="utf-8")
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if mutation.code == OK:
        assert (code, err) == (OK, ""), err
        return
    assert code == REFUSED and out == "", (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith(f"harness: error: {path}"), lines[0]
    assert re.match(rf"harness: error: {re.escape(str(path))}:\d+: ", lines[0]), lines[0]
