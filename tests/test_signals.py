"""signals.py: the command line takes SIGTERM as Ctrl-C, and exits 143."""

import os
import signal
import subprocess
import sys

import pytest

import nn_xp as nx

ENV = {**os.environ, "NN_XP_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="needs POSIX signals")
def test_sigterm_stops_after_the_step_writes_the_model_and_exits_143(tmp_path):
    import time

    model_path = tmp_path / "m.npz"
    process = subprocess.Popen(
        [sys.executable, "-m", "nn_xp", "train", "--dataset", "moons", "--epochs", "100000", "--verbose-epoch", "1",
         "--save", str(model_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert process.stdout.readline().startswith("Epoch 0")  # training has started
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err
    assert "[stopped: interrupted]" in out and f"model written to {model_path}" in out
    assert "Traceback" not in err
    assert nx.load(model_path, device="cpu").history.stop_reason == "interrupted"


def test_a_sigterm_outside_training_exits_143_without_a_traceback(tmp_path):
    code = ("import os, signal, sys\n"
            "from nn_xp import cli\n"
            "cli.cmd_info = lambda args: os.kill(os.getpid(), signal.SIGTERM) or 0\n"
            "cli.COMMANDS['info'] = cli.cmd_info\n"
            "sys.exit(cli.main(['info']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert result.returncode == 143 and "Traceback" not in result.stderr, result.stderr
