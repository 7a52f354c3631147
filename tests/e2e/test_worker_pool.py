"""The plugins' worker pool: a command that succeeds prints no traceback of its workers, and
Ctrl-C stops the workers without one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

# Run the way the CLI runs: SIGTERM raises KeyboardInterrupt in this process (cli's
# _raise_interrupt), a handler a forked worker would inherit.
SCRIPT = textwrap.dedent(
    """
    import signal, sys, time

    import torch

    from polyvae.plugins.shared import worker_pool


    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt


    signal.signal(signal.SIGTERM, raise_interrupt)
    threads = torch.get_num_threads()
    if sys.argv[1] == "succeed":
        with worker_pool(2, preload="polyvae.plugins.shared") as pool:
            print(sum(pool.map(abs, range(-1000, 0), chunksize=10)))
    else:
        try:
            with worker_pool(2, preload="polyvae.plugins.shared") as pool:
                waiting = pool.map_async(time.sleep, [60] * 4)
                time.sleep(1)  # the workers are asleep in their tasks
                print("busy", flush=True)
                waiting.get()
        except KeyboardInterrupt:
            print("interrupted")
    print("threads restored" if torch.get_num_threads() == threads else "threads changed")
    """
)


def run_script(mode: str, interrupt: bool = False) -> tuple[int, str, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's command has
        # A shell's background job ignores SIGINT, and Python keeps an inherited SIG_IGN: a suite
        # started so (CI under nohup ... &) slept through the Ctrl-C into the 120 s timeout.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        if interrupt:
            assert process.stdout.readline() == "busy\n"
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches every process of the group
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stdout, stderr


def test_a_pool_that_succeeds_prints_no_traceback():
    code, stdout, stderr = run_script("succeed")
    assert code == 0, stderr
    assert stdout.splitlines() == [str(sum(range(1, 1001))), "threads restored"]
    assert stderr == ""


def test_ctrl_c_stops_the_workers_without_their_tracebacks():
    code, stdout, stderr = run_script("interrupt", interrupt=True)
    assert code == 0, stderr
    assert stdout.splitlines() == ["interrupted", "threads restored"]
    assert "Traceback" not in stderr, stderr
