"""Meta-tests: every hook and every engine key is documented; every hook has a test."""

from __future__ import annotations

import inspect
from pathlib import Path

from polyvae import hookspecs
from polyvae.config import ENGINE_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
HOOKS = [name for name, value in inspect.getmembers(hookspecs) if hasattr(value, "polyvae_spec")]


def test_there_are_hooks():
    assert set(HOOKS) >= {"register_domains", "register_commands", "register_metrics"}


def test_every_hook_is_documented():
    text = (ROOT / "docs" / "architecture.md").read_text() + (ROOT / "README.md").read_text()
    for hook in HOOKS:
        assert f"`{hook}(" in text, f"hook {hook} is not documented in docs/architecture.md"
        assert inspect.getdoc(getattr(hookspecs, hook)), f"hook {hook} has no docstring"


def test_every_hook_has_a_test():
    tests = "".join(path.read_text() for path in (ROOT / "tests").rglob("test_*.py"))
    for hook in HOOKS:
        assert f"def {hook}(" in tests, f"no test implements the hook {hook}"


def test_every_engine_key_is_documented():
    text = (ROOT / "docs" / "configuration.md").read_text()
    for option in ENGINE_OPTIONS:
        assert f"| `{option.name}` |" in text, f"engine key {option.name} is not documented"
