"""The installed `polyvae sample` streams a large sample to a file (the `model` fixture is
test_sampling_stream's, through tests/e2e/conftest.py)."""

from __future__ import annotations

from conftest import run_polyvae


def test_cli_streams_a_large_sample_to_a_file(tmp_path, plugin_site, model):
    out = tmp_path / "samples" / "big.csv"
    result = run_polyvae(
        ["sample", model.run_dir, "-n", 10_000, "--seed", 0, "-o", out], site=plugin_site
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 10,000 items" in result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 10_000 and len(set(lines)) == 10_000
    assert [path.name for path in out.parent.iterdir()] == ["big.csv"]  # no temporary left
