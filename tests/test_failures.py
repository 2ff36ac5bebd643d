"""Failure injection: what the model looks like after something goes wrong mid-fit or mid-save,
and what `load` does with hostile files.

The rules checked here:
- an exception from a callback (or a KeyboardInterrupt raised anywhere) propagates unchanged; the
  model keeps the state of its last completed optimizer step: parameters, optimizer state and
  step count agree with an undisturbed run stopped at that step, and the history holds exactly
  the epochs that completed. If nothing was trained yet, fit leaves the model as it found it;
- a failed save (disk full, permission denied) leaves any previous file intact, no temporary file
  behind, and an OSError of the same kind and errno whose message names the file;
- a non-finite loss or learning rate never leaves non-finite parameters behind;
- running out of (GPU) memory says so and suggests a smaller batch;
- `load` refuses hostile files with a ValueError naming the file, executes nothing, and allocates
  no more than the file's bytes justify.
"""

import errno
import functools
import io
import json
import math
import os
import pickle
import signal
import struct
import tempfile
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nn_xp as nx
from nn_xp.io import persistence
from nn_xp.optim.schedules import Schedule
from nn_xp.training.callbacks import Callback, ModelCheckpoint

from .test_properties import examples

rng = np.random.default_rng(0)
Y = rng.integers(0, 3, size=40)
X = np.array([[0, 3], [3, 0], [-3, -3]])[Y] + rng.normal(size=(40, 2))
FIT = dict(epochs=3, batch_size=10, verbose=0)  # 4 steps per epoch, 12 in all
STEPS_PER_EPOCH = 4


def fresh():
    return nx.MLP([2, 6, 3], output_activation="softmax", device="cpu", seed=0)


class Recorder(Callback):
    """Copies of the parameters and the optimizer state after every step."""

    def __init__(self):
        self.params, self.states = [], []

    def on_batch_end(self, epoch, batch):
        self.params.append([p.copy() for p in self.model.parameters()])
        self.states.append(self.model.optimizer.state_dict())


@functools.cache
def reference():
    """An undisturbed run: the state after each of its steps, and its history."""
    model = fresh()
    initial = [p.copy() for p in model.parameters()]
    recorder = Recorder()
    model.fit(X, Y, callbacks=[recorder], **FIT)
    return initial, recorder, model.history


def assert_state_after(model, steps: int, epochs_done: int):
    """The model is exactly the undisturbed run after `steps` optimizer steps."""
    initial, recorder, history = reference()
    expected = initial if steps == 0 else recorder.params[steps - 1]
    for got, want in zip(model.parameters(), expected):
        np.testing.assert_array_equal(got, want)
    assert model.optimizer.step_count == steps
    if steps:
        state = model.optimizer.state_dict()
        for key, arrays in recorder.states[steps - 1]["state"].items():
            for got, want in zip(state["state"][key], arrays):
                np.testing.assert_array_equal(got, want)
    assert model.history.epoch == list(range(epochs_done))
    for key, values in model.history.history.items():
        assert len(values) == epochs_done, key
        if key != "epoch_time":
            assert values == history.history[key][:epochs_done], key
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def assert_untouched(model):
    """fit failed before its first step: the fresh model is as it was."""
    initial, _, _ = reference()
    for got, want in zip(model.parameters(), initial):
        np.testing.assert_array_equal(got, want)
    assert model.optimizer is None and model.history is None and model.loss is None
    assert model.rng.bit_generator.state == fresh().rng.bit_generator.state
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def assert_training_continues(model):
    steps = model.optimizer.step_count
    epochs = len(model.history)
    model.fit(X, Y, epochs=1, batch_size=10, verbose=0)
    assert model.optimizer.step_count == steps + STEPS_PER_EPOCH and len(model.history) == epochs + 1
    assert all(np.all(np.isfinite(p)) for p in model.parameters())


# ---- exceptions from callbacks -------------------------------------------------------------------
class RaiseAt(Callback):
    def __init__(self, hook, epoch, batch, error):
        self.hook, self.at, self.error = hook, (epoch, batch), error

    def on_epoch_begin(self, epoch):
        if self.hook == "on_epoch_begin" and epoch == self.at[0]:
            raise self.error

    def on_batch_end(self, epoch, batch):
        if self.hook == "on_batch_end" and (epoch, batch) == self.at:
            raise self.error

    def on_epoch_end(self, epoch, logs):
        if self.hook == "on_epoch_end" and epoch == self.at[0]:
            raise self.error


ERRORS = [lambda: RuntimeError("callback failed"), lambda: KeyboardInterrupt(), lambda: ValueError("bad value")]


@examples(30)
@given(
    hook=st.sampled_from(["on_epoch_begin", "on_batch_end", "on_epoch_end"]),
    epoch=st.integers(0, FIT["epochs"] - 1),
    batch=st.integers(0, STEPS_PER_EPOCH - 1),
    make_error=st.sampled_from(ERRORS),
)
def test_an_exception_in_a_callback_propagates_and_leaves_the_last_completed_step(hook, epoch, batch, make_error):
    error = make_error()
    model = fresh()
    with pytest.raises(type(error)) as info:
        model.fit(X, Y, callbacks=[RaiseAt(hook, epoch, batch, error)], **FIT)
    assert info.value is error  # unchanged: same object, same message
    if hook == "on_epoch_begin" and epoch == 0:
        assert_untouched(model)
        return
    if hook == "on_batch_end":
        steps, epochs_done = epoch * STEPS_PER_EPOCH + batch + 1, epoch
    elif hook == "on_epoch_end":  # the epoch was recorded before its callbacks ran
        steps, epochs_done = (epoch + 1) * STEPS_PER_EPOCH, epoch + 1
    else:
        steps, epochs_done = epoch * STEPS_PER_EPOCH, epoch
    assert_state_after(model, steps, epochs_done)
    assert_training_continues(model)


def test_an_exception_in_on_train_begin_leaves_a_trained_model_as_it_was():
    model = fresh()
    model.fit(X, Y, optimizer="momentum", **FIT)
    before = ([p.copy() for p in model.parameters()], model.optimizer, model.optimizer.state_dict(),
              model.history.epoch[:], model.rng.bit_generator.state)

    class Fails(Callback):
        def on_train_begin(self, logs):
            raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        model.fit(X, Y, optimizer="adam", learning_rate=0.5, callbacks=[Fails()], **FIT)
    for got, want in zip(model.parameters(), before[0]):
        np.testing.assert_array_equal(got, want)
    assert model.optimizer is before[1] and model.optimizer.label == "momentum"
    assert model.optimizer.learning_rate == 0.01 and model.optimizer.step_count == 12
    assert model.history.epoch == before[3] and model.rng.bit_generator.state == before[4]


def test_a_second_ctrl_c_during_a_step_is_raised_when_the_step_is_done():
    """A real SIGINT twice, inside the optimizer's update: the update still completes."""
    model = fresh()
    optimizer = nx.optim.Adam(model.parameters())  # the "adam" of the reference run
    update = optimizer._update
    calls = {"n": 0}

    def interrupted_update(ops, p, g, state, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # epoch 1, batch 1
            os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: stop after this step
            # The second: stop now, but not half way. Called directly, because two signals sent
            # before Python runs the handler would be seen as one.
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        return update(ops, p, g, state, **kwargs)

    optimizer._update = interrupted_update
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, optimizer=optimizer, **FIT)
    assert calls["n"] == 6
    assert_state_after(model, steps=6, epochs_done=1)
    assert_training_continues(model)


# ---- non-finite values -------------------------------------------------------------------------
@examples(15)
@given(step=st.integers(1, FIT["epochs"] * STEPS_PER_EPOCH))
def test_a_nan_gradient_at_any_step_restores_the_last_good_epoch(step):
    model = fresh()
    original = model.train_step
    calls = {"n": 0}

    def poisoned(Xb, Yb, head, **kwargs):
        L, grads, out = original(Xb, Yb, head, **kwargs)
        calls["n"] += 1
        if calls["n"] == step:
            grads[1][0] = np.nan
        return L, grads, out

    model.train_step = poisoned
    epoch = (step - 1) // STEPS_PER_EPOCH
    with pytest.warns(RuntimeWarning, match=f"became (nan|NaN or infinite .*) in epoch {epoch}; .* restored"):
        history = model.fit(X, Y, **FIT)
    assert history.stop_reason == "non-finite loss"
    assert_state_after(model, steps=epoch * STEPS_PER_EPOCH, epochs_done=epoch)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_a_huge_finite_learning_rate_is_accepted_and_its_divergence_undone():
    """learning_rate=1e300 passes the argument check (it is a finite number > 0); the first epoch
    diverges, and fit restores the model's state from before the fit and says so."""
    model = fresh()
    with pytest.warns(RuntimeWarning, match="restored to its state before this fit"):
        history = model.fit(X, Y, optimizer="sgd", learning_rate=1e300, **FIT)
    assert history.stop_reason == "non-finite loss" and history.epoch == []
    initial, _, _ = reference()
    for got, want in zip(model.parameters(), initial):
        np.testing.assert_array_equal(got, want)
    assert model.optimizer.step_count == 0


class Explode(Schedule):
    name = "explode"

    def __init__(self, at, value=math.inf):
        self.at, self.value = at, value

    def _value(self, epoch, base_learning_rate, logs):
        return self.value if epoch == self.at else base_learning_rate


@pytest.mark.parametrize("value", [math.inf, math.nan, -1.0])
@pytest.mark.parametrize("at", [0, 2])
def test_a_schedule_giving_an_unusable_learning_rate_stops_with_a_clear_error(at, value):
    model = fresh()
    with pytest.raises(ValueError, match=f"schedule .* learning rate for epoch {at}: learning_rate must be"):
        model.fit(X, Y, schedule=Explode(at, value), **FIT)
    if at == 0:
        assert_untouched(model)
        return
    assert model.optimizer.learning_rate == 0.001
    assert_state_after(model, steps=at * STEPS_PER_EPOCH, epochs_done=at)


# ---- out of memory -------------------------------------------------------------------------------
class OutOfMemoryError(Exception):
    """Named like cupy.cuda.memory.OutOfMemoryError, which this machine cannot raise for real."""


@pytest.mark.parametrize("error", [OutOfMemoryError("out of memory allocating 1,073,741,824 bytes"), MemoryError()])
@pytest.mark.parametrize("at_call", [1, 6])
def test_running_out_of_memory_suggests_a_smaller_batch(error, at_call):
    model = fresh()
    original = model.train_step
    calls = {"n": 0}

    def hungry(Xb, Yb, head, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise error
        return original(Xb, Yb, head, **kwargs)

    model.train_step = hungry
    with pytest.raises(MemoryError, match=r"ran out of memory on cpu .* try a smaller batch_size \(now 10\)") as info:
        model.fit(X, Y, **FIT)
    assert info.value.__cause__ is error
    if at_call == 1:
        assert_untouched(model)
    else:
        assert_state_after(model, steps=at_call - 1, epochs_done=(at_call - 1) // STEPS_PER_EPOCH)


def test_out_of_memory_with_the_full_batch_says_so():
    model = fresh()

    def hungry(Xb, Yb, head, **kwargs):
        raise OutOfMemoryError("out of memory")

    model.train_step = hungry
    with pytest.raises(MemoryError, match=r"now None, the full batch"):
        model.fit(X, Y, epochs=1, batch_size=None, verbose=0)


# ---- failing saves -------------------------------------------------------------------------------
def _fails_with(code):
    def fail(*args, **kwargs):
        for argument in args[:1]:
            if hasattr(argument, "write"):
                argument.write(b"PK\x03\x04 half a zip")
        raise OSError(code, os.strerror(code))

    return fail


STAGES = {"write": (persistence.np, "savez"), "fsync": (persistence.os, "fsync"),
          "chmod": (persistence.os, "chmod"), "rename": (persistence.os, "replace")}


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EIO])
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_failed_save_keeps_the_previous_file_and_says_what_happened(tmp_path, monkeypatch, stage, code):
    path = tmp_path / "model.npz"
    fresh().save(path)
    before = path.read_bytes()
    trained = fresh()
    trained.fit(X, Y, **FIT)
    monkeypatch.setattr(*STAGES[stage], _fails_with(code))
    with pytest.raises(OSError) as info:
        trained.save(path)
    monkeypatch.undo()
    error = info.value
    assert error.errno == code and isinstance(error, type(OSError(code, "")))  # PermissionError for EACCES
    assert str(path) in str(error) and os.strerror(code) in str(error), str(error)
    assert isinstance(error.__cause__, OSError)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]
    assert nx.load(path, device="cpu").optimizer is None  # still the old, untrained model


def test_a_failing_checkpoint_stops_fit_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    savez = np.savez
    calls = {"n": 0}

    def disk_fills_up(handle, **arrays):
        calls["n"] += 1
        if calls["n"] == 3:  # the end of epoch 2
            return _fails_with(errno.ENOSPC)(handle)
        return savez(handle, **arrays)

    monkeypatch.setattr(persistence.np, "savez", disk_fills_up)
    model = fresh()
    with pytest.raises(OSError, match="No space left on device") as info:
        model.fit(X, Y, callbacks=[ModelCheckpoint(str(path), monitor="loss")], **FIT)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and str(path) in str(info.value)
    assert os.listdir(tmp_path) == ["checkpoint.npz"]
    assert_state_after(model, steps=12, epochs_done=3)
    saved = nx.load(path, device="cpu")
    assert saved.history.epoch == [0, 1] and saved.optimizer.step_count == 8
    _, recorder, _ = reference()
    for got, want in zip(saved.parameters(), recorder.params[7]):
        np.testing.assert_array_equal(got, want)


# ---- hostile model files -------------------------------------------------------------------------
class Payload:
    """Unpickling this creates `marker`: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.npz"
    model = fresh()
    model.fit(X, Y, **FIT)
    model.save(path)
    return path


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_zip(path, members, compression=zipfile.ZIP_STORED):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names, which we want here
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, raw in members:
                archive.writestr(name, raw)
    return path


def _npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _load_refused(path, *words):
    """load(path) raises a ValueError that starts with the path and contains `words`; returns it."""
    with pytest.raises(ValueError) as info:
        nx.load(path, device="cpu")
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert len(message) < 1000, "an error message should be readable"
    for word in words:
        assert word in message, message
    return message


def test_the_payload_would_run_if_unpickled(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()  # so its absence below means nothing was unpickled


@pytest.mark.parametrize("where", ["whole file", "parameter", "meta", "raw member", "single npy"])
def test_loading_never_unpickles(good, tmp_path, where):
    marker = tmp_path / "ran"
    payload = np.array([Payload(marker)], dtype=object)
    bad = tmp_path / "bad.npz"
    members = _members(good)
    if where == "whole file":
        bad.write_bytes(pickle.dumps(Payload(marker)))
    elif where == "single npy":
        bad.write_bytes(_npy(payload))
    else:
        name = {"parameter": "param_1.npy", "meta": "meta.npy", "raw member": "param_0.npy"}[where]
        members[name] = pickle.dumps(Payload(marker)) if where == "raw member" else _npy(payload)
        _write_zip(bad, members.items())
    _load_refused(bad)
    assert not marker.exists()


ODD_NAMES = ["../param_0.npy", "/etc/param_0.npy", "sub/param_0.npy", "param_0.npy/../meta.npy",
             "päram_0.npy", "参数.npy", "x" * 5000 + ".npy", "param_0", "param_0.NPY", "param_0.npy "]


@pytest.mark.parametrize("name", ODD_NAMES, ids=lambda name: name[:20])
def test_odd_member_names_are_refused(good, tmp_path, name):
    members = _members(good)
    bad = _write_zip(tmp_path / "bad.npz", [*members.items(), (name, members["param_0.npy"])])
    _load_refused(bad, "unexpected member")


def test_a_member_that_appears_twice_is_refused(good, tmp_path):
    members = _members(good)
    swapped = _npy(np.zeros((6, 2), np.float32))
    bad = _write_zip(tmp_path / "bad.npz", [*members.items(), ("param_0.npy", swapped)])
    _load_refused(bad, "'param_0.npy' appears twice")


def _patch_central_sizes(data: bytes, name: str, compressed: int, uncompressed: int) -> bytes:
    """Rewrite the sizes a zip's central directory declares for member `name`."""
    data = bytearray(data)
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) >= 0:
        length = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46 : start + 46 + length] == name.encode():
            struct.pack_into("<II", data, start + 20, compressed, uncompressed)
        start += 4
    return bytes(data)


def _forged_header(shape):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _traced_peak(function):
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_sizes_larger_than_the_file_are_refused_before_allocating(good, tmp_path):
    """Members whose zip entries claim ~2 GB in a file of a few KB (as overlapping-member zip bombs
    do), with .npy headers that agree with the claims: refused from the directory alone."""
    members = _members(good)
    meta = json.loads(bytes(np.load(io.BytesIO(members["meta.npy"]))))
    big = 2**26
    meta["layer_sizes"] = [2, big, 3]
    meta["optimizer"] = None
    shapes = {"param_0.npy": (big, 2), "param_1.npy": (big,), "param_2.npy": (3, big), "param_3.npy": (3,)}
    forged = {name: _forged_header(shape) + b"\0" * 64 for name, shape in shapes.items()}
    raw = _npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    data = _write_zip(tmp_path / "forged.npz", [("meta.npy", raw), *forged.items()]).read_bytes()
    for name, shape in shapes.items():
        claimed = len(forged[name]) - 64 + 4 * math.prod(shape)
        data = _patch_central_sizes(data, name, claimed, claimed)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(data)
    peak = _traced_peak(lambda: _load_refused(bad, "bytes"))
    assert peak < 64 * len(data) + 2**20, f"load allocated {peak} bytes for a {len(data)}-byte file"


def test_a_stored_member_claiming_more_bytes_than_it_holds_is_refused(good, tmp_path):
    members = _members(good)
    data = _write_zip(tmp_path / "forged.npz", members.items()).read_bytes()
    stored = len(members["param_0.npy"])
    bad = tmp_path / "bad.npz"
    bad.write_bytes(_patch_central_sizes(data, "param_0.npy", stored, 1000 * stored))
    peak = _traced_peak(lambda: _load_refused(bad, "param_0"))
    assert peak < 64 * len(data) + 2**20


def test_deeply_nested_metadata_is_refused(good, tmp_path):
    members = _members(good)
    members["meta.npy"] = _npy(np.frombuffer(b"[" * 200_000 + b"]" * 200_000, dtype=np.uint8))
    _load_refused(_write_zip(tmp_path / "bad.npz", members.items()), "JSON")


# ---- fuzzing the file format -----------------------------------------------------------------------
@functools.cache
def _good_bytes() -> bytes:
    model = fresh()
    model.fit(X, Y, **FIT)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.npz")
        model.save(path)
        with open(path, "rb") as handle:
            return handle.read()


def _load_bytes(data: bytes):
    """load() on these bytes: a model, or a ValueError naming the file; nothing else."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fuzzed.npz")
        with open(path, "wb") as handle:
            handle.write(data)
        try:
            return nx.load(path, device="cpu")
        except ValueError as error:
            assert str(error).startswith(path), str(error)
            return None


@examples(200)
@given(st.data())
def test_corrupted_files_load_or_raise_value_error(data_):
    data = bytearray(_good_bytes())
    kind = data_.draw(st.sampled_from(["flip", "truncate", "splice"]))
    if kind == "truncate":
        data = data[: data_.draw(st.integers(0, len(data) - 1))]
    elif kind == "splice":
        start = data_.draw(st.integers(0, len(data) - 1))
        data[start : start + 8] = data_.draw(st.binary(min_size=1, max_size=8))
    else:
        for _ in range(data_.draw(st.integers(1, 6))):
            data[data_.draw(st.integers(0, len(data) - 1))] = data_.draw(st.integers(0, 255))
    model = _load_bytes(bytes(data))
    if model is not None:  # a flip in, e.g., a weight's bytes still gives a model of the same shape
        assert model.layer_sizes == [2, 6, 3]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
META_KEYS = ["format_version", "layer_sizes", "activation", "output_activation", "init", "dtype", "seed",
             "preprocessing", "loss", "optimizer", "history", "rng"]


@examples(200)
@given(key=st.sampled_from(META_KEYS), value=JSON, nested=st.booleans(), inner=st.text(max_size=12))
def test_tampered_metadata_loads_or_raises_value_error(key, value, nested, inner):
    archive = np.load(io.BytesIO(_good_bytes()))
    members = {name: archive[name] for name in archive.files}
    meta = json.loads(bytes(members["meta"]))
    if nested and isinstance(meta.get(key), dict) and meta[key]:
        meta[key][sorted(meta[key])[len(inner) % len(meta[key])]] = value
    else:
        meta[key] = value
    members["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    _load_bytes(buffer.getvalue())


def test_a_network_larger_than_the_machine_is_refused_before_drawing_weights():
    """Where the system overcommits memory, drawing such weights would grind on instead of failing."""
    with pytest.raises(MemoryError, match=r"layer_sizes \[1, 99999999999, 1\] give 299,999,999,998 parameters"):
        nx.MLP([1, 99_999_999_999, 1], device="cpu")


def test_the_memory_check_looks_at_each_place_with_its_own_need(monkeypatch):
    """The host must hold the float64 draw, a GPU only the parameters in their dtype."""
    from nn_xp.backends import memory

    sizes = {"cpu": 100, "cuda:0": 50}
    monkeypatch.setattr(memory, "memory_bytes", lambda device: sizes[device])
    memory.check_memory(100, "cuda:0", 50, "these")  # both fit exactly
    with pytest.raises(MemoryError, match="these need 0.0 GiB but the GPU has"):
        memory.check_memory(100, "cuda:0", 51, "these")
    with pytest.raises(MemoryError, match="but the host has"):
        memory.check_memory(101, "cpu", 0, "these")
    memory.check_memory(100, "cpu", 10**9, "these")  # a CPU model has no GPU to check


def test_a_divergence_is_said_once_without_numpy_floating_point_warnings():
    """The epoch's overflows are not printed one NumPy line per operation: fit's one warning says it."""
    from nn_xp.training import NonFiniteLossWarning

    model = fresh()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(X, Y, optimizer="sgd", learning_rate=1e300, **FIT)
    assert history.stop_reason == "non-finite loss"
    assert [type(w.message) for w in caught] == [NonFiniteLossWarning], [str(w.message) for w in caught]
    assert issubclass(NonFiniteLossWarning, RuntimeWarning)  # filters written for RuntimeWarning still match
