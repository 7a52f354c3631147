"""A SIGTERM or Ctrl-C while `polyvae sample` writes a file leaves nothing behind: no file, no
traceback, no worker process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest
from conftest import polyvae_command, processes

from polyvae.plugins.molecules.metrics import default_n_jobs


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_a_stop_while_sampling_to_a_file_leaves_nothing_behind(tmp_path, stop):
    """A kill, or a terminal's Ctrl-C (which reaches every process of the command), mid-sample:
    no output, no temporary file, no traceback, and neither the RDKit worker processes nor
    multiprocessing's helpers outlive the command."""
    workers = default_n_jobs()
    if workers < 2:
        pytest.skip("one CPU: the writer renders in the main process")
    out = tmp_path / "many.csv"
    process = subprocess.Popen(
        [polyvae_command(), "sample", "molecules", "-n", "200000", "--seed", "0", "-o", out],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, to find every process it started
        # A shell's background job ignores SIGINT, and Python keeps an inherited SIG_IGN.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # A generous bound, not a timing check: the bundled model's 512-unit decoder on a busy
        # machine takes minutes to decode them.
        deadline = time.time() + 600
        # The workers start once 4,000 molecules are decoded (PARALLEL_FROM); beside them run
        # the command, multiprocessing's forkserver and its resource tracker.
        while len(processes(group=process.pid)) < workers + 3 and time.time() < deadline:
            time.sleep(0.2)
        assert len(processes(group=process.pid)) == workers + 3, "the workers did not start"
        assert any(path.name.endswith(".tmp") for path in tmp_path.iterdir())
        if stop == "sigterm":
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    except BaseException:
        # The whole group: a failed check must not leave workers behind for the next tests.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        raise
    # Nothing but click's word: no traceback, no worker's complaint.
    assert (process.returncode, stderr.strip()) == (1, "Aborted!")
    assert list(tmp_path.iterdir()) == []
    deadline = time.time() + 10
    while processes(group=process.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert processes(group=process.pid) == []
