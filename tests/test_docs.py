"""Meta-tests: every hook and every engine key is documented; every hook has a test; the plugin
tutorial's hook reference and code agree with the hook specs and the scaffold."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from polyvae import hookspecs, scaffold
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


TUTORIAL = ROOT / "docs" / "writing-plugins.md"


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_the_hook_reference_matches_the_hook_specs():
    reference = _section(TUTORIAL.read_text(), "Hook reference")
    documented = {
        name: [arg.strip() for arg in args.split(",") if arg.strip()]
        for name, args in re.findall(r"^### `(\w+)\(([^)]*)\)`$", reference, flags=re.M)
    }
    specs = {hook: list(inspect.signature(getattr(hookspecs, hook)).parameters) for hook in HOOKS}
    assert documented == specs, "the hook reference in docs/writing-plugins.md is out of date"
    for hook in HOOKS:  # each entry says something, not just the heading
        entry = reference.split(f"### `{hook}(")[1].split("\n### ")[0]
        assert len(entry.split()) > 30, f"the hook reference entry of {hook} is too thin"


def test_the_tutorial_covers_the_whole_domain_contract():
    text = TUTORIAL.read_text()
    for piece in (
        "read(source, config)",
        "fit_codec",
        "load_codec",
        "adapt_codec(codec, items, config)",
        "build(config, codec, latent_dim)",
        "log_prob(batch, z)",
        "generate(z, temperature",
        "metrics(generated, reference, training)",
        "reconstruction_metrics(originals, reconstructions)",
        "likelihood_unit",
        "unit_counts(batch)",
        "generate_options",
        "properties(items, names)",
        "pretrained()",
        "check_domain(",
        "check_read(",
        "polyvae new-plugin",
    ):
        assert piece in text, f"docs/writing-plugins.md does not mention {piece}"
    assert "writing-plugins.md" in (ROOT / "README.md").read_text()


def test_the_tutorials_code_is_the_scaffolds_code():
    """Python blocks parse, and their def/class/return lines are the generated plugin's own."""
    names = scaffold.plugin_names("weather")
    generated = {
        line.strip()
        for path, data in scaffold.render_templates(names)
        if path.suffix == ".py"
        for line in data.decode().splitlines()
    }
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.S)
    assert len(blocks) >= 8
    for block in blocks:
        ast.parse(block)
        for line in block.splitlines():
            if line.strip().startswith(("def ", "class ", "return ")):
                assert line.strip() in generated, f"tutorial line not in the scaffold: {line}"
