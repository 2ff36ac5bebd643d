"""Saving and loading: exact round trips, atomic writes, refusals of bad files, bitwise resume."""

import json
import math
import os
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import nn_xp as nx
from nn_xp import backends, files
from nn_xp.data.datasets import load_dataset
from nn_xp.io import persistence

from .conftest import PARITY_RTOL, relative_difference

X = np.random.default_rng(0).normal(size=(20, 3))
Y = np.arange(20) % 3


def _trained(device="cpu", dtype="float32", optimizer="adam"):
    """A small softmax classifier after two epochs, with preprocessing set."""
    model = nx.MLP([3, 5, 4, 3], activation=["tanh", {"name": "leaky_relu", "negative_slope": 0.2}],
                   output_activation="softmax", dtype=dtype, device=device, seed=1)
    # batch 10 divides the 20 samples: every batch is a full one on every backend.
    model.fit(X, Y, optimizer=optimizer, epochs=2, batch_size=10, verbose=0)
    model.preprocessing = {"mean": [0.5, -1.0, 2.0], "std": [1.0, 2.0, 0.25]}
    return model


def _host(arrays):
    return [backends.to_numpy(a) for a in arrays]


def _members(path):
    """Every member of a saved file, and its metadata as a dict."""
    with np.load(path, allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}
    return members, json.loads(bytes(members.pop("meta")))


def _write(path, members, meta=None):
    """A hand-made .npz (np.savez pickles object arrays, as an attacker's file would)."""
    if meta is not None:
        members = {**members, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    with open(path, "wb") as handle:
        np.savez(handle, **members)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.npz"
    _trained().save(path)
    return path


# ---- round trips -----------------------------------------------------------------------------
def test_round_trip_is_exact(device, dtype, tmp_path):
    model = _trained(device, dtype)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = nx.load(path, device=device)

    assert loaded.device == device and loaded.dtype == dtype
    assert loaded.layer_sizes == model.layer_sizes
    assert loaded.activation == model.activation and loaded.output_activation == "softmax"
    for a, b in zip(_host(loaded.parameters()), _host(model.parameters())):
        assert a.dtype == np.dtype(dtype) and np.array_equal(a, b)
    assert backends.device_of(loaded.parameters()[0]) == device
    assert loaded.preprocessing == model.preprocessing
    assert loaded.history.history == model.history.history and loaded.history.epoch == [0, 1]
    assert loaded.optimizer.label == "adam" and loaded.optimizer.step_count == model.optimizer.step_count == 4
    mine, theirs = loaded.optimizer.state_dict(), model.optimizer.state_dict()
    assert mine["hyperparameters"] == theirs["hyperparameters"]
    for key in theirs["state"]:
        for a, b in zip(mine["state"][key], theirs["state"][key]):
            assert np.array_equal(a, b)
    assert backends.device_of(loaded.optimizer.state.m[0]) == device
    assert loaded.rng.bit_generator.state == model.rng.bit_generator.state
    assert np.array_equal(backends.to_numpy(loaded.predict(X)), backends.to_numpy(model.predict(X)))


def test_predictions_agree_after_moving_devices(tmp_path, device):
    model = _trained("cpu", "float64", optimizer="momentum")
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = nx.load(path, device=device)
    assert loaded.optimizer.label == "momentum" and loaded.optimizer.momentum == 0.9
    assert relative_difference(loaded.predict_proba(X), model.predict_proba(X)) <= PARITY_RTOL["float64"]
    if device == "array_api_strict":  # the same host arithmetic: bitwise
        assert np.array_equal(backends.to_numpy(loaded.predict_proba(X)), model.predict_proba(X))


def test_default_device_and_untrained_model(tmp_path):
    model = nx.MLP([2, 3, 1], device="cpu", seed=None)
    path = tmp_path / "untrained.npz"
    model.save(path)
    loaded = nx.load(path)
    assert loaded.device == nx.default_device()
    assert loaded.optimizer is None and loaded.history is None and loaded.preprocessing is None
    assert loaded.seed is None
    for a, b in zip(_host(loaded.parameters()), _host(model.parameters())):
        assert np.array_equal(a, b)


def test_path_used_as_given_and_folders_created(tmp_path):
    path = tmp_path / "a" / "b" / "weights.bin"
    assert persistence.save(_trained(), str(path)) == str(path)
    assert sorted(os.listdir(path.parent)) == ["weights.bin"]  # no ".npz" added, no temp file left
    assert nx.load(path, device="cpu").layer_sizes == [3, 5, 4, 3]


def test_file_is_plain_npz_with_strict_json(saved):
    with zipfile.ZipFile(saved) as archive:
        names = sorted(archive.namelist())
    assert "meta.npy" in names and "param_5.npy" in names and "opt_m_0.npy" in names
    members, meta = _members(saved)  # allow_pickle=False: no member needs pickle

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    with np.load(saved, allow_pickle=False) as archive:
        assert archive["meta"].dtype == np.uint8 and archive["meta"].ndim == 1
        json.loads(bytes(archive["meta"]), parse_constant=no_constants)
    assert meta["format_version"] == 2 and meta["nn_xp_version"] == nx.__version__
    assert meta["layer_sizes"] == [3, 5, 4, 3] and meta["dtype"] == "float32" and meta["seed"] == 1
    assert meta["optimizer"]["name"] == "adam" and meta["optimizer"]["state"] == {"m": 6, "v": 6}
    assert isinstance(meta["rng"]["state"]["state"], str)  # a 128-bit integer, as decimal text
    assert members["param_0"].shape == (5, 3) and members["param_0"].dtype == np.float32


def test_non_finite_history_values_survive(tmp_path):
    model = _trained()
    model.history.history["val_loss"] = [float("nan"), float("inf")]
    path = tmp_path / "model.npz"
    model.save(path)
    restored = nx.load(path, device="cpu").history.history["val_loss"]
    assert math.isnan(restored[0]) and restored[1] == math.inf


# ---- atomic writes -------------------------------------------------------------------------------
def _fail_mid_write(handle, **arrays):
    handle.write(b"PK\x03\x04 half a zip")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("where", ["writer", "rename"])
def test_failed_save_keeps_the_old_file(saved, monkeypatch, where):
    before = saved.read_bytes()
    if where == "writer":
        monkeypatch.setattr(persistence.np, "savez", _fail_mid_write)
    else:
        def refuse(*args):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(persistence.os, "replace", refuse)
    with pytest.raises(OSError):
        _trained(optimizer="sgd").save(saved)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == ["model.npz"]  # the temp file is gone
    monkeypatch.undo()
    assert nx.load(saved, device="cpu").optimizer.label == "adam"


def test_unwritable_folder_gives_a_clear_error(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.tempfile, "mkstemp", denied)
    path = tmp_path / "model.npz"
    with pytest.raises(PermissionError, match="cannot write the model file") as info:
        _trained().save(path)
    assert str(path) in str(info.value) and not path.exists()


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="cannot write the model file"):
            _trained().save(folder / "model.npz")
    finally:
        folder.chmod(0o700)


# ---- refusals --------------------------------------------------------------------------------
def _tamper(kind):
    """A function (good file path -> bad file path) for each kind of damage."""

    def edit(change):
        def make(path):
            members, meta = _members(path)
            change(members, meta)
            bad = path.with_name("bad.npz")
            _write(bad, members, meta)
            return bad

        return make

    def raw(data):
        def make(path):
            bad = path.with_name("bad.npz")
            bad.write_bytes(data(path.read_bytes()))
            return bad

        return make

    def set_(key, value):
        return lambda members, meta: meta.__setitem__(key, value)

    return {
        "pickled object": edit(lambda m, meta: m.__setitem__("param_1", np.array([{"x": 1}] * 5, dtype=object))),
        "truncated": raw(lambda data: data[: len(data) // 2]),
        "truncated tail": raw(lambda data: data[:-10]),
        "garbage": raw(lambda data: bytes(range(256)) * 8),
        "future version": edit(set_("format_version", 3)),
        "no version": edit(lambda m, meta: meta.pop("format_version")),
        "shape": edit(lambda m, meta: m.__setitem__("param_0", np.zeros((5, 4), np.float32))),
        "dtype": edit(lambda m, meta: m.__setitem__("param_0", m["param_0"].astype(np.float64))),
        "int dtype": edit(lambda m, meta: m.__setitem__("param_1", np.zeros(5, np.int32))),
        "extra member": edit(lambda m, meta: m.__setitem__("payload", np.zeros(3))),
        "missing member": edit(lambda m, meta: m.pop("param_5")),
        "missing meta": lambda path: _write_members_only(path),
        "bad json": lambda path: _write_meta_bytes(path, b"{not json"),
        "meta not uint8": lambda path: _write_meta_array(path, np.zeros(4, np.float32)),
        "huge layers": edit(set_("layer_sizes", [10**9, 10**9, 10**9, 3])),
        "bad layers": edit(set_("layer_sizes", [3, -5, 4, 3])),
        "unknown activation": edit(set_("activation", [{"name": "tanh"}, {"name": "os.system"}])),
        "unknown output": edit(set_("output_activation", "argmax")),
        "bad dtype name": edit(set_("dtype", "object")),
        "bad rng": edit(set_("rng", {"bit_generator": "os.system", "state": {}})),
        "bad optimizer": edit(lambda m, meta: meta["optimizer"].__setitem__("name", "evil")),
        "optimizer state count": edit(lambda m, meta: meta["optimizer"]["state"].__setitem__("m", 7)),
    }[kind]


def _write_members_only(path):
    members, _ = _members(path)
    bad = path.with_name("bad.npz")
    _write(bad, members)
    return bad


def _write_meta_bytes(path, raw):
    members, _ = _members(path)
    bad = path.with_name("bad.npz")
    _write(bad, {**members, "meta": np.frombuffer(raw, dtype=np.uint8)})
    return bad


def _write_meta_array(path, array):
    members, _ = _members(path)
    bad = path.with_name("bad.npz")
    _write(bad, {**members, "meta": array})
    return bad


REFUSALS = {
    "pickled object": "pickle",
    "truncated": "not a readable .npz",
    "truncated tail": "not a readable .npz",
    "garbage": "not a readable .npz",
    "future version": "written by a newer nn_xp (format 3); this version reads up to 2",
    "no version": "format_version",
    "shape": "shape (5, 4)",
    "dtype": "dtype float64",
    "int dtype": "dtype int32",
    "extra member": "unexpected members ['payload']",
    "missing member": "missing members ['param_5']",
    "missing meta": "no 'meta' member",
    "bad json": "JSON",
    "meta not uint8": "uint8",
    "huge layers": "layer_sizes [1000000000",
    "bad layers": "layer_sizes",
    "unknown activation": "os.system",
    "unknown output": "output_activation",
    "bad dtype name": "dtype",
    "bad rng": "bit_generator",
    "bad optimizer": "optimizer",
    "optimizer state count": "one array per parameter",
}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_refuses_bad_files(saved, kind):
    bad = _tamper(kind)(saved)
    with pytest.raises(ValueError) as info:
        nx.load(bad, device="cpu")
    message = str(info.value)
    assert message.startswith(str(bad)), message
    assert REFUSALS[kind] in message, message


def test_forged_header_is_refused_without_allocating(saved):
    """A member whose .npy header claims 8 TB is refused from its header, before any allocation."""
    members, meta = _members(saved)
    meta["layer_sizes"] = [10**6, 10**6, 4, 3]
    meta["param_shapes"] = [[10**6, 10**6], [10**6], [4, 10**6], [4], [3, 4], [3]]
    bad = saved.with_name("forged.npz")
    _write(bad, {k: v for k, v in members.items() if k not in ("param_0", "param_1")}, meta)
    with zipfile.ZipFile(bad, "a") as archive:
        for name, shape in [("param_0", (10**6, 10**6)), ("param_1", (10**6,))]:
            with archive.open(f"{name}.npy", "w") as stream:
                np.lib.format.write_array_header_1_0(stream, {"descr": "<f4", "fortran_order": False, "shape": shape})
                stream.write(b"\0" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="declares shape") as info:
            nx.load(bad, device="cpu")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value).startswith(str(bad))
    assert peak < 10 * 2**20


def test_not_an_npz_archive(tmp_path):
    single = tmp_path / "array.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="not an .npz archive"):
        nx.load(single, device="cpu")
    with pytest.raises(FileNotFoundError, match="no such model file"):
        nx.load(tmp_path / "missing.npz", device="cpu")
    with pytest.raises(ValueError, match=r"not a regular file \(a folder\)"):
        nx.load(tmp_path, device="cpu")


# ---- resuming ----------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_is_bitwise(optimizer, tmp_path):
    """2N epochs straight == N epochs, save, load, N more: same parameters, bit for bit."""
    data = load_dataset("sine")
    arguments = dict(optimizer=optimizer, epochs=5, batch_size=32, verbose=0)

    def fresh():
        return nx.MLP([1, 10, 10, 1], activation="tanh", output_activation="sigmoid", device="cpu", seed=0)

    straight = fresh()
    straight.fit(data.X, data.y, **{**arguments, "epochs": 10})
    first = fresh()
    first.fit(data.X, data.y, **arguments)
    halfway = _host(first.parameters())
    path = tmp_path / "half.npz"
    first.save(path)
    resumed = nx.load(path, device="cpu")
    resumed.fit(data.X, data.y, **arguments)

    assert resumed.history.epoch == list(range(10))
    assert resumed.history.history["loss"] == straight.history.history["loss"]
    for a, b, c in zip(_host(resumed.parameters()), _host(straight.parameters()), halfway):
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)  # the second half did train


def test_an_lbfgs_model_saves_and_resumes_exactly(tmp_path):
    X3 = np.random.default_rng(0).standard_normal((20, 3))
    straight = nx.MLP([3, 5, 3], output_activation="softmax", dtype="float64", device="cpu", seed=1)
    straight.fit(X3, Y, optimizer="lbfgs", batch_size=None, epochs=4, verbose=0)
    halves = nx.MLP([3, 5, 3], output_activation="softmax", dtype="float64", device="cpu", seed=1)
    halves.fit(X3, Y, optimizer=nx.optim.LBFGS(halves.parameters(), max_iter=20, history_size=100),
               batch_size=None, epochs=2, verbose=0)
    halves.save(tmp_path / "m.npz")
    loaded = nx.load(tmp_path / "m.npz", device="cpu")
    assert type(loaded.optimizer) is nx.optim.LBFGS
    assert loaded.optimizer.scalars == halves.optimizer.scalars
    loaded.fit(X3, Y, optimizer="lbfgs", batch_size=None, epochs=2, verbose=0)
    for a, b in zip(_host(straight.parameters()), _host(loaded.parameters())):
        np.testing.assert_array_equal(a, b)
