"""build_model: the built-in GPT, or a user's callable from a module or a file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from harness.models import GPT, build_model, resolve_config

USER_MODEL = textwrap.dedent(
    """
    import torch
    import torch.nn as nn

    class Bigram(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.cfg = cfg
            self.table = nn.Embedding(cfg.vocab_size, cfg.vocab_size)

        def forward(self, idx):
            return self.table(idx)

    def make(cfg):
        return Bigram(cfg)

    def not_a_model(cfg):
        return "oops"

    NOT_CALLABLE = 3
    """
)


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_model.py"
    path.write_text(USER_MODEL)
    return path


def test_gpt_arch_builds_gpt() -> None:
    cfg = resolve_config("tiny")
    model = build_model("gpt", cfg)
    assert isinstance(model, GPT) and model.config is cfg


def test_module_path_arch_calls_the_callable_with_the_config() -> None:
    cfg = resolve_config("tiny-llama")
    model = build_model("harness.models.gpt:GPT", cfg)
    assert isinstance(model, GPT) and model.config is cfg


def test_file_path_arch_loads_the_file(user_file: Path) -> None:
    cfg = resolve_config("tiny")
    model = build_model(f"{user_file}:make", cfg)
    assert model.cfg is cfg
    assert model(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, 256)
    # loading twice reuses one module, so classes stay identical
    assert type(build_model(f"{user_file}:make", cfg)) is type(model)


@pytest.mark.parametrize("arch", ["transformer-xl", "gpt2", ":make", "harness.models.gpt:"])
def test_unknown_arch_names_it(arch: str) -> None:
    with pytest.raises(ValueError, match=f"unknown arch '{arch}'"):
        build_model(arch, resolve_config("tiny"))


def test_bad_locations_raise_value_error(user_file: Path, tmp_path: Path) -> None:
    cfg = resolve_config("tiny")
    cases = {
        f"{tmp_path}/missing.py:make": "no such file",
        "relative/my_model.py:make": "must be absolute",
        "no_such_package.models:make": "cannot import 'no_such_package.models'",
        f"{user_file}:missing": "has no attribute 'missing'",
        f"{user_file}:NOT_CALLABLE": "is not callable",
    }
    for arch, message in cases.items():
        with pytest.raises(ValueError, match=message) as error:
            build_model(arch, cfg)
        assert arch in str(error.value) and "\n" not in str(error.value)


def test_callable_must_return_a_module(user_file: Path) -> None:
    with pytest.raises(TypeError, match="returned str"):
        build_model(f"{user_file}:not_a_model", resolve_config("tiny"))
