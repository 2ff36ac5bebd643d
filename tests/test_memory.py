"""Memory: what loading a model file and reading training data cost, measured, with bounds that fail.

Peaks are measured with tracemalloc (NumPy reports its allocations to it) in this process, or as
the peak resident size of a fresh subprocess where memory mapping is the point.
"""

import json
import tracemalloc

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.nn.layers import Dense


def _peak(function):
    """(result, peak bytes traced while calling function())."""
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _rewrite_meta(path, change):
    """Rewrite a model file's metadata with `change(meta)`, keeping its arrays."""
    with np.load(path, allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}
    meta = json.loads(bytes(members.pop("meta")))
    change(meta)
    members["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, **members)


# ---- loading a model file --------------------------------------------------------------------
def test_load_peaks_at_about_twice_the_parameters(tmp_path):
    """The stored arrays are read once and packed once; no random weights are drawn first."""
    path = tmp_path / "model.npz"
    model = nx.MLP([784, 512, 256, 10], output_activation="softmax", seed=0, device="cpu")
    model.save(path)
    n_bytes = sum(p.nbytes for p in model.parameters())
    loaded, peak = _peak(lambda: nx.load(path, device="cpu"))
    for a, b in zip(loaded.parameters(), model.parameters()):
        np.testing.assert_array_equal(a, b)
    assert peak <= 2 * n_bytes + 2**20, f"peak {peak / 2**20:.1f} MB for {n_bytes / 2**20:.1f} MB of parameters"


def test_load_frees_each_array_read_once_it_is_packed(tmp_path):
    """Resident peak of a load in a fresh process: the parameters and about one stored array (the
    largest), not the parameters twice."""
    import subprocess
    import sys

    path = tmp_path / "model.npz"
    model = nx.MLP([2048] * 5 + [2], seed=0, device="cpu")  # four 16 MB weight matrices
    model.save(path)
    n_bytes = sum(p.nbytes for p in model.parameters())
    largest = max(p.nbytes for p in model.parameters())
    probe = (
        "import sys, nn_xp\n"
        "def kib(key):\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(key))\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "before = kib('VmRSS:')\n"
        "nn_xp.load(sys.argv[1], device='cpu')\n"
        "print((kib('VmHWM:') - before) * 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60)
    growth = int(done.stdout.split()[-1])
    # 20 MB for the zip's buffers, the NaN check and the metadata (about 12 here); without the
    # arrays freed as they are packed the peak is the parameters twice (~140 MB), before any of
    # this work five times them (~330 MB).
    bound = n_bytes + largest + 20 * 2**20
    assert growth < bound, f"peak grew by {growth / 2**20:.0f} MB for {n_bytes / 2**20:.0f} MB of parameters"


def test_a_small_file_declaring_a_huge_network_is_refused_without_allocating(tmp_path):
    """Layer specs that claim Dense(4000, 4000) over a few bytes of members: refused from the shapes
    before any weights of that size are made (a seed-0 draw used to come first)."""
    path = tmp_path / "model.npz"
    nx.Sequential([Dense(3, 5, "tanh"), Dense(5, 2)], output_activation="softmax", seed=0).save(path)

    def claim_huge(meta):
        meta["layers"][0].update(n_in=4000, n_out=4000)
        meta["layers"][1].update(n_in=4000)

    _rewrite_meta(path, claim_huge)

    def refusal():
        with pytest.raises(ValueError) as info:
            nx.load(path, device="cpu")
        return str(info.value)

    message, peak = _peak(refusal)
    assert peak < 4 * 2**20, f"refusing a {path.stat().st_size}-byte file peaked at {peak / 2**20:.1f} MB"
    assert message.startswith(str(path))
    assert "layer_sizes [4000, 4000, 2] need (4000, 4000)" in message, message


def test_loaded_model_predicts_and_trains_like_the_saved_one(tmp_path):
    path = tmp_path / "model.npz"
    X = np.random.default_rng(0).normal(size=(30, 4))
    y = np.arange(30) % 3
    model = nx.Sequential([Dense(4, 6, "relu"), Dense(6, 3)], output_activation="softmax", seed=3)
    model.fit(X, y, epochs=2, batch_size=10, verbose=0)
    model.save(path)
    loaded = nx.load(path, device="cpu")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    model.fit(X, y, epochs=1, batch_size=10, verbose=0)
    loaded.fit(X, y, epochs=1, batch_size=10, verbose=0)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


# ---- training data from .npy and .npz files -------------------------------------------------
# The child reports how far its resident size rose above what it was after importing nn_xp: a
# memory-mapped file counts once its pages are read, a copy of it counts again.
_CHILD = """
import sys
import nn_xp, nn_xp.data.datasets, nn_xp.training  # imported before the baseline: their size is no data's
from nn_xp.cli import main

def kib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

before = kib("VmRSS")
code = main(sys.argv[1:])
print("GROWTH", (kib("VmHWM") - before) * 1024, "CODE", code)
"""


def _cli_growth(tmp_path, *argv):
    """(exit code, peak RSS growth in bytes) of `nn-xp argv` in a fresh process."""
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    done = subprocess.run([sys.executable, str(script), *map(str, argv)], capture_output=True, text=True,
                          timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("GROWTH")]
    assert lines, done.stdout + done.stderr
    _, growth, _, code = lines[-1].split()
    return int(code), int(growth)


def _data(tmp_path, rows=250_000, columns=64):
    """X float32 (64 MB by default) and y class labels, as .npy files and one uncompressed .npz."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, columns), dtype=np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    return X.nbytes


@pytest.mark.parametrize("source", ["npy", "npz"])
def test_cli_trains_from_a_memory_mapped_file_without_copying_it(tmp_path, source):
    """A 64 MB float32 X trains with its pages read in place: the peak grows by about the file (its
    pages once read), not by the float64 copy and the row-gathered copies it used to make."""
    n_bytes = _data(tmp_path)
    dataset = ["--dataset", tmp_path / "X.npy", "--targets", tmp_path / "y.npy"] if source == "npy" else \
        ["--dataset", tmp_path / "data.npz"]
    code, growth = _cli_growth(tmp_path, "train", *dataset, "--layers", 64, 8, 2, "--epochs", 1,
                               "--batch-size", 4096, "--quiet", "--save", tmp_path / "model.npz")
    assert code == 0
    assert growth < 1.5 * n_bytes, f"peak RSS grew by {growth / 2**20:.0f} MB for a {n_bytes / 2**20:.0f} MB X"


def test_cli_predicts_a_memory_mapped_file_in_batches(tmp_path):
    n_bytes = _data(tmp_path)
    model = nx.MLP([64, 8, 2], output_activation="softmax", seed=0, device="cpu")
    model.save(tmp_path / "model.npz")
    code, growth = _cli_growth(tmp_path, "predict", tmp_path / "model.npz", tmp_path / "X.npy",
                               "--output", tmp_path / "labels.npy")
    assert code == 0
    assert growth < 1.5 * n_bytes, f"peak RSS grew by {growth / 2**20:.0f} MB for a {n_bytes / 2**20:.0f} MB X"
    X = np.load(tmp_path / "X.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy").astype(np.int64).ravel(),
                                  np.asarray(model.predict(X)))


def test_a_npy_dataset_without_targets_is_refused_before_it_is_read(tmp_path, capsys):
    from nn_xp.cli import main

    (tmp_path / "X.npy").write_bytes(b"not read at all")
    assert main(["train", "--dataset", str(tmp_path / "X.npy")]) != 0
    error = capsys.readouterr().err
    assert "--targets Y.npy" in error and "not a readable" not in error, error


def test_targets_with_other_rows_are_named(tmp_path, capsys):
    from nn_xp.cli import main

    np.save(tmp_path / "X.npy", np.zeros((10, 3), dtype=np.float32))
    np.save(tmp_path / "y.npy", np.zeros(7))
    assert main(["train", "--dataset", str(tmp_path / "X.npy"), "--targets", str(tmp_path / "y.npy")]) != 0
    error = capsys.readouterr().err
    assert "y.npy" in error and "(10 rows)" in error and "(7,)" in error, error


def test_npz_members_are_mapped_or_read_in_their_own_dtype(tmp_path):
    from nn_xp.data.datasets import load_file

    X = np.arange(60, dtype=np.float32).reshape(20, 3)
    y = np.arange(20) % 2
    np.savez(tmp_path / "plain.npz", X=X, y=y)
    np.savez_compressed(tmp_path / "packed.npz", X=X, y=y)
    np.savez(tmp_path / "fortran.npz", X=np.asfortranarray(X), y=y)
    for name in ("plain", "packed", "fortran"):
        data = load_file(tmp_path / f"{name}.npz")
        assert data.X.dtype == np.float32, name
        np.testing.assert_array_equal(data.X, X)
        np.testing.assert_array_equal(data.y, y)
    assert isinstance(load_file(tmp_path / "plain.npz").X, np.memmap)
    X[3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", X=X, y=y)
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_file(tmp_path / "nan.npz")


# ---- a table with a text column --------------------------------------------------------------
def test_one_hot_columns_are_written_straight_into_X(tmp_path):
    """A 40-category column became a (n_samples, 40) float64 block, then was copied into X: the
    block is gone, so the arrays traced stay near X's own size."""
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from nn_xp.data.datasets import load_file

    rng = np.random.default_rng(0)
    n = 100_000
    path = tmp_path / "table.csv"
    with open(path, "w") as handle:
        handle.write("x,city,label\n")
        handle.writelines(f"{x:.3f},city_{c},{c % 3}\n" for x, c in zip(rng.standard_normal(n), rng.integers(0, 40, n)))
    data, peak = _peak(lambda: load_file(path, target="label", one_hot=True, impute="mean"))
    assert data.X.shape == (n, 41) and np.all(data.X[:, 1:].sum(axis=1) == 1)
    n_bytes = data.X.nbytes
    assert peak < 1.5 * n_bytes, f"peak {peak / 2**20:.0f} MB for X of {n_bytes / 2**20:.0f} MB"
