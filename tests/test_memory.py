"""Memory: what loading a model file and reading training data cost, measured, with bounds that fail.

Peaks are measured with tracemalloc (NumPy reports its allocations to it) in this process, or as
the peak resident size of a fresh subprocess where memory mapping is the point.
"""

import json
import tracemalloc

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.layers import Dense


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
