"""A suite file is strict: every problem, its own or an entry's scenario's, is one line naming
the suite file, the line and the field, exit 2, before anything runs."""

from __future__ import annotations

import pytest
import torch

from harness.suite.loader import load_suite

GOOD_ENTRY = """\
  - label: a
    scenario: ../scenarios/tiny.yaml
"""


def test_an_unknown_top_level_key_names_its_line(write_suite, refused):
    path = write_suite("name: s\nentrys:\n" + GOOD_ENTRY)
    assert refused("suite", path, "--dry-run") == \
        f"{path}:2: entrys: unknown key 'entrys' (did you mean 'entries'?)"


def test_an_unknown_key_of_an_entry_names_the_entry(write_suite, refused):
    path = write_suite("name: s\nentries:\n" + GOOD_ENTRY + "  - label: b\n    scenaro: x.yaml\n")
    assert refused("suite", path, "--dry-run") == \
        f"{path}:6: entries.1.scenaro: unknown key 'scenaro' (did you mean 'scenario'?)"


def test_a_label_may_not_repeat(write_suite, refused):
    path = write_suite("name: s\nentries:\n" + GOOD_ENTRY + GOOD_ENTRY)
    assert refused("suite", path, "--dry-run") == (
        f"{path}:5: entries.1.label: label 'a' appears twice (first at line 3): each entry's "
        "report gets a folder of that name")


@pytest.mark.parametrize("label, why", [
    ("a/b", "a label is a folder name: 1-64 letters, digits, '-' or '_', starting with a letter "
            "or digit, got 'a/b'"),
    ("index.html", "a label is a folder name: 1-64 letters, digits, '-' or '_', starting with a "
                   "letter or digit, got 'index.html'"),
    ("checks", "the label 'checks' is the checks' folder"),
])
def test_a_label_is_a_safe_folder_name(write_suite, refused, label, why):
    path = write_suite(f"name: s\nentries:\n  - label: '{label}'\n    scenario: ../scenarios/tiny.yaml\n")
    assert refused("suite", path, "--dry-run") == f"{path}:3: entries.0.label: {why}"


def test_an_unknown_check_is_refused_with_the_known_ones(write_suite, refused):
    path = write_suite("name: s\nentries:\n  - label: c\n    check: prefligth\n")
    assert refused("suite", path, "--dry-run") == (
        f"{path}:4: entries.0.check: unknown check 'prefligth' (did you mean 'preflight'?) "
        "(known: overhead, preflight)")


def test_an_entry_is_a_scenario_or_a_check(write_suite, refused):
    path = write_suite("name: s\nentries:\n  - label: c\n    check: preflight\n    set: [repeats=2]\n")
    assert refused("suite", path, "--dry-run") == \
        f"{path}:3: entries.0: a check entry takes no set or smoke_set"
    path = write_suite("name: s\nentries:\n  - label: c\n")
    assert refused("suite", path, "--dry-run") == \
        f"{path}:3: entries.0: an entry has either scenario: PATH or check: NAME"


def test_a_missing_scenario_file_names_the_entry(write_suite, refused, suite_dir):
    path = write_suite("name: s\nentries:\n  - label: a\n    scenario: ../scenarios/nope.yaml\n")
    assert refused("suite", path, "--dry-run") == (
        f"{path}:4: entries.0.scenario: no scenario file '../scenarios/nope.yaml' (looked for "
        f"{suite_dir / 'scenarios' / 'nope.yaml'}; paths are relative to the suite file)")


def test_a_bad_override_names_its_item_and_the_scenario_complaint(write_suite, refused):
    path = write_suite("""\
        name: s
        entries:
          - label: a
            scenario: ../scenarios/tiny.yaml
            set:
              - repeats=1
              - train.stepz=3
        """)
    assert refused("suite", path, "--dry-run") == (
        f"{path}:7: entries.0.set.1: entry 'a': scenarios/tiny.yaml: train.stepz: unknown key "
        "'stepz' (did you mean 'steps'?) (from --set train.stepz=3)")


def test_a_bad_smoke_override_is_found_without_smoke(write_suite, refused):
    """The smoke form is loaded too, so CI is not the first to hear of it."""
    path = write_suite("name: s\nsmoke: [train.steps=x]\nentries:\n" + GOOD_ENTRY)
    line = refused("suite", path, "--dry-run")
    assert line.startswith(f"{path}:2: smoke.0: entry 'a': scenarios/tiny.yaml: train.steps: ")
    assert line.endswith("(from --set train.steps=x)")
    path = write_suite("name: s\nentries:\n" + GOOD_ENTRY + "    smoke_set: [oops]\n")
    assert refused("suite", path, "--dry-run") == (
        f"{path}:5: entries.0.smoke_set.0: entry 'a': --set: expected KEY=VALUE, got 'oops'")


def test_an_override_yaml_read_as_a_mapping_gets_a_hint(write_suite, refused):
    path = write_suite("name: s\nentries:\n" + GOOD_ENTRY + "    set:\n      - train.steps: 3\n")
    assert refused("suite", path, "--dry-run") == (
        f"{path}:6: entries.0.set.0: each item is one KEY=VALUE string, not a mapping: write KEY=VALUE, "
        "and quote an item whose value holds ': ' (\"matrix={precision: [bf16]}\")")


def test_overrides_apply_in_order_set_then_smoke_then_smoke_set(write_suite):
    path = write_suite("name: s\nsmoke: [train.steps=3, repeats=2]\nentries:\n" + GOOD_ENTRY
                       + "    set: [train.steps=4]\n    smoke_set: [repeats=1]\n")
    normal = load_suite(path).entries[0]
    assert normal.overrides == ("train.steps=4",)
    assert normal.loaded.scenario.train.steps == 4
    smoke = load_suite(path, smoke=True).entries[0]
    assert smoke.overrides == ("train.steps=4", "train.steps=3", "repeats=2", "repeats=1")
    assert (smoke.loaded.scenario.train.steps, smoke.loaded.scenario.repeats) == (3, 1)


@pytest.mark.parametrize("argv, message", [
    (["--assume-device", "NVIDIA H200"],
     "--assume-device: plans for a device that is not here: add --dry-run"),
    (["--dry-run", "--assume-device", "NVIDIA H200", "--smoke"],
     "--assume-device: names the device to plan for; leave out --smoke"),
    (["--smoke", "--device", "cuda"], "--device: --smoke runs on the CPU; leave out --device"),
    (["--format", "json"], "--format: formats the --dry-run plan: add --dry-run"),
])
def test_options_that_do_not_go_together(write_suite, refused, argv, message):
    path = write_suite("name: s\nentries:\n" + GOOD_ENTRY)
    assert refused("suite", path, *argv) == message


def test_an_unknown_assumed_device_is_refused_naming_the_known_ones(write_suite, refused):
    path = write_suite("name: s\nentries:\n" + GOOD_ENTRY)
    assert refused("suite", path, "--dry-run", "--assume-device", "NVIDIA T4") == (
        "--assume-device: cannot plan for 'NVIDIA T4': known devices are GH200, H200, H100, B200, "
        "A100, L40S, L4 (e.g. 'NVIDIA H200')")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the suite's device is here")
def test_a_suite_for_a_device_that_is_not_here_names_its_device_line(write_suite, refused):
    path = write_suite("name: s\ndevice: cuda\nentries:\n" + GOOD_ENTRY)
    line = refused("suite", path)
    assert line.startswith(f"{path}:2: device: CUDA was requested but torch sees no CUDA device")
    assert refused("suite", path, "--dry-run").endswith(
        "; plan for a GPU that is not here with --assume-device NAME")
