"""nn_xp/files.py: every file nn_xp writes is replaced atomically; what is not a regular file is never read."""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest

import nn_xp as nx
from nn_xp import cli, files
from nn_xp.data.datasets import load_dataset, load_file


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    data = load_dataset("iris")
    model = nx.MLP([4, 8, 3], output_activation="softmax", device="cpu", seed=0)
    model.fit(data.X, data.y, epochs=2, verbose=0)
    model.classes = [str(c) for c in data.class_names]
    path = folder / "iris.npz"
    model.save(path)
    np.save(folder / "X.npy", data.X)
    return model, path, folder / "X.npy"


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _leftovers(folder):
    return [name for name in os.listdir(folder) if files.TEMP_MARK in name]


# ---- atomic_write ------------------------------------------------------------------------------
def test_a_failure_mid_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    target = tmp_path / "report.txt"
    target.write_text("old")
    with pytest.raises(OSError, match=f"{target}: cannot write the report .No space left") as info:
        with files.atomic_write(target, "w", what="report") as handle:
            handle.write("half of the new")
            _full_disk()
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == "old" and _leftovers(tmp_path) == []
    with files.atomic_write(target, "w") as handle:
        handle.write("new")
    assert target.read_text() == "new" and _leftovers(tmp_path) == []


def test_a_non_os_error_passes_unchanged_and_the_old_file_stays(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyError):
        with files.atomic_write(target) as handle:
            handle.write(b"new")
            raise KeyError("inside")
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "shared.csv"
    target.write_text("old")
    os.chmod(target, 0o640)
    with files.atomic_write(target, "w") as handle:
        handle.write("new")
    assert target.stat().st_mode & 0o777 == 0o640


def test_stale_temporary_files_of_a_killed_run_are_removed_at_the_next_write(tmp_path):
    target = tmp_path / "model.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a process that has ended
    stale = tmp_path / f"{files.temp_prefix(str(target))}{dead}-abc123"
    stale.write_bytes(b"half a model")
    alive = tmp_path / f"{files.temp_prefix(str(target))}{os.getppid()}-def456"  # a running writer's
    alive.write_bytes(b"being written")
    other = tmp_path / f"{files.temp_prefix('other.npz')}{dead}-abc123"  # another file's: not ours to touch
    other.write_bytes(b"x")
    model = nx.MLP([2, 3, 1], device="cpu")
    model.save(target)
    assert not stale.exists() and alive.exists() and other.exists()
    assert nx.load(target, device="cpu").layer_sizes == [2, 3, 1]


@pytest.mark.parametrize("writer", ["model", "checkpoint", "predict-csv", "predict-npy", "export", "plot",
                                    "parity"])
def test_every_writer_keeps_the_old_file_when_the_disk_fills(writer, trained, tmp_path, monkeypatch):
    model, model_path, X_path = trained
    suffix = {"predict-csv": ".csv", "predict-npy": ".npy", "export": ".onnx", "plot": ".png",
              "parity": ".json"}.get(writer, ".npz")
    target = tmp_path / f"out{suffix}"
    target.write_bytes(b"the old file")
    original_fsync = os.fsync

    def fail_on_the_temporary_file(descriptor):  # the bytes are written; the flush to disk fails
        if files.TEMP_MARK in os.readlink(f"/proc/self/fd/{descriptor}"):
            _full_disk()
        return original_fsync(descriptor)

    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to tell the temporary file's descriptor")
    monkeypatch.setattr(files.os, "fsync", fail_on_the_temporary_file)
    with pytest.raises(OSError) as info:
        if writer == "model":
            model.save(target)
        elif writer == "checkpoint":
            from nn_xp.training.callbacks import ModelCheckpoint

            data = load_dataset("iris")
            nx.MLP([4, 8, 3], output_activation="softmax", device="cpu").fit(
                data.X, data.y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(str(target), monitor="loss")])
        elif writer.startswith("predict"):
            code = cli.main(["predict", str(model_path), str(X_path), "--output", str(target), "--debug"])
            assert code != 0
        elif writer == "export":
            pytest.importorskip("onnx")
            cli.main(["export", str(model_path), str(target), "--debug"])
        elif writer == "plot":
            pytest.importorskip("matplotlib")
            from nn_xp.plot import training_figure

            training_figure(model, load_dataset("iris").X, load_dataset("iris").y, path=target)
        else:
            cli.main(["parity", "--devices", "cpu", "cpu", "--dataset", "iris", "--n-samples", "60",
                      "--layers", "4", "5", "3", "--steps", "2", "--output", str(target), "--debug"])
    assert info.value.errno == errno.ENOSPC and str(target) in str(info.value)
    assert target.read_bytes() == b"the old file"
    assert _leftovers(tmp_path) == []


def test_the_cli_says_which_file_it_could_not_write(trained, tmp_path, monkeypatch, capsys):
    _, model_path, X_path = trained
    target = tmp_path / "predictions.csv"
    target.write_text("old")
    monkeypatch.setattr(files.tempfile, "mkstemp", _full_disk)
    assert cli.main(["predict", str(model_path), str(X_path), "--output", str(target)]) == 2
    error = capsys.readouterr().err
    assert f"{target}: cannot write the predictions file there (No space left on device)" in error
    assert target.read_text() == "old"


# ---- reading only regular files --------------------------------------------------------------------
@pytest.fixture
def specials(tmp_path):
    """name -> (path, kind) for a FIFO, a character device and a folder, each with a usable suffix."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    found = {"fifo": (fifo, "a FIFO"), "folder": (tmp_path / "folder", "a folder")}
    (tmp_path / "folder").mkdir()
    if os.path.exists("/dev/zero"):
        found["device"] = ("/dev/zero", "a character device")
    return found


def _with_suffix(tmp_path, path, suffix):
    """A link named *.suffix to `path`, so the readers of each format are reached."""
    link = tmp_path / f"link-{os.path.basename(str(path))}{suffix}"
    if not link.exists():
        os.symlink(path, link)
    return link


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_the_library_refuses_what_is_not_a_regular_file_at_once(kind, specials, tmp_path):
    if kind not in specials:
        pytest.skip("no /dev/zero here")
    path, words = specials[kind]
    code = """
import sys
import nn_xp as nx
from nn_xp.data.datasets import load_file, read_table
path = sys.argv[1]
for read in (lambda: nx.load(path, device="cpu"), lambda: load_file(path, target="y"), lambda: read_table(path)):
    try:
        read()
    except ValueError as error:
        print(error)
    else:
        print("read!")
"""
    for suffix in (".npz", ".npy", ".csv", ".parquet"):
        link = _with_suffix(tmp_path, path, suffix)
        result = subprocess.run([sys.executable, "-c", code, str(link)], capture_output=True, text=True,
                                timeout=60)  # a read that blocks fails here
        lines = result.stdout.splitlines()
        assert len(lines) == 3, (lines, result.stderr)
        assert all(line.startswith(f"{link}: not a regular file ({words}); give the ") for line in lines), lines


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_the_command_line_refuses_what_is_not_a_regular_file_at_once(kind, specials, trained, tmp_path):
    if kind not in specials:
        pytest.skip("no /dev/zero here")
    path, words = specials[kind]
    _, model_path, X_path = trained
    csv = _with_suffix(tmp_path, path, ".csv")
    env = {**os.environ, "NN_XP_DEVICE": "cpu"}
    for args in (["predict", str(path), str(X_path)], ["predict", str(model_path), str(csv)],
                 ["predict", str(model_path), str(_with_suffix(tmp_path, path, ".npy"))],
                 ["evaluate", str(path), "iris"], ["evaluate", str(model_path), str(csv), "--target", "y"],
                 ["train", "--dataset", str(csv), "--target", "y", "--epochs", "1"],
                 ["train", "--dataset", "iris", "--epochs", "1", "--resume", str(path)]):
        result = subprocess.run([sys.executable, "-m", "nn_xp", *args], capture_output=True, text=True, env=env,
                                timeout=60)  # a read that blocks fails here
        assert result.returncode == 2, (args, result.stderr)
        assert f": not a regular file ({words})" in result.stderr and "Traceback" not in result.stderr, args


def test_a_link_to_a_regular_file_is_read(trained, tmp_path):
    _, model_path, X_path = trained
    os.symlink(model_path, tmp_path / "linked.npz")
    os.symlink(X_path, tmp_path / "linked.npy")
    assert nx.load(tmp_path / "linked.npz", device="cpu").layer_sizes == [4, 8, 3]
    assert load_file(tmp_path / "linked.npy").X.shape == (150, 4)
