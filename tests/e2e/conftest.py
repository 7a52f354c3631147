"""The end-to-end tier: every test in this folder is marked `e2e`, which the default `pytest`
run leaves out (pyproject.toml's addopts); `pytest -m e2e` runs them, `pytest -m ""` everything.

The shared fixtures of tests/conftest.py apply here as they do to the fast tier. The fixtures
below belong to fast-tier modules whose end-to-end tests moved here; importing them into this
conftest makes pytest offer them to every test in the folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_distributed_sampling import run_dir  # noqa: F401
from test_latent import fitted_run  # noqa: F401
from test_report import report_page, trained_run  # noqa: F401
from test_sampling_stream import model  # noqa: F401
from test_security import clean_run, run_copy  # noqa: F401

E2E_FOLDER = Path(__file__).parent


# tryfirst: the mark must be on each item before pytest's `-m` selection reads the marks.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FOLDER in item.path.parents:
            item.add_marker(pytest.mark.e2e)
