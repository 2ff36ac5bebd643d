"""Training from host memory (streaming.py): the same results as with X on the device, bitwise,
on every backend; the choice of "auto"; and clear errors where streaming cannot be done."""

import numpy as np
import pytest

import nn_xp as nx
from nn_xp import backends
from nn_xp.training.streaming import HostBatches, needs_streaming, use_streaming

from .conftest import GPU_COUNT


def _data(n=203, d=7, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    return X, y % classes


def _fit(device, dtype, streaming_, X, y, **kwargs):
    model = nx.MLP([X.shape[1], 16, 8, 3], output_activation="softmax", dtype=dtype, device=device, seed=3,
                   dropout=kwargs.pop("dropout", 0.0))
    history = model.fit(X, y, epochs=3, batch_size=kwargs.pop("batch_size", 32), verbose=0,
                        streaming=streaming_, **kwargs)
    return model, history


@pytest.mark.parametrize("options", [
    {},
    {"shuffle": False},
    {"validation_split": 0.2},
    {"dropout": 0.3, "l2": 0.01},
    {"sample_weight": "random", "batch_size": 50},
    {"optimizer": "momentum", "clip_norm": 1.0},
], ids=["shuffled", "in-order", "validation-split", "dropout-l2", "weights-last-batch-short", "momentum-clip"])
def test_streamed_training_equals_training_with_x_on_the_device(device, dtype, options, monkeypatch):
    X, y = _data()
    options = dict(options)
    if options.get("sample_weight") == "random":
        options["sample_weight"] = np.random.default_rng(1).uniform(0.5, 2.0, size=len(y))
    resident = _fit(device, dtype, False, X, y, **dict(options))
    gathered = []  # the rows each host batch took: the streamed run must really read X through them
    start = HostBatches.start
    monkeypatch.setattr(HostBatches, "start", lambda self, slot, rows: (gathered.append(rows), start(self, slot, rows)))
    streamed = _fit(device, dtype, True, X, y, **dict(options))
    n_train = len(y) - int(len(y) * options.get("validation_split", 0))
    batch = options.get("batch_size", 32)
    assert len(gathered) == 3 * -(-n_train // batch)
    counts = np.bincount(np.concatenate([np.arange(len(y))[r] for r in gathered]), minlength=len(y))
    assert sorted(set(counts.tolist())) == ([0, 3] if n_train < len(y) else [3])  # each training row once an epoch
    for p, q in zip(resident[0].parameters(), streamed[0].parameters()):
        np.testing.assert_array_equal(nx.to_numpy(p), nx.to_numpy(q))
    for key, values in resident[1].history.items():
        if key != "epoch_time":
            assert streamed[1].history[key] == values, key


def test_streamed_mixed_precision_equals_the_resident_run():
    X, y = _data()
    runs = [_fit("cpu", "float32", s, X, y, precision="mixed_float16") for s in (False, True)]
    for p, q in zip(runs[0][0].parameters(), runs[1][0].parameters()):
        np.testing.assert_array_equal(p, q)


def test_a_memmap_streams_without_being_read_whole(tmp_path):
    X, y = _data(n=150)
    path = tmp_path / "X.f32"
    X.astype(np.float32).tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)
    resident = _fit("cpu", "float32", False, X.astype(np.float32), y)
    streamed = _fit("cpu", "float32", True, mapped, y)
    for p, q in zip(resident[0].parameters(), streamed[0].parameters()):
        np.testing.assert_array_equal(p, q)


def test_host_batches_alternate_two_buffers_and_refuse_an_oversized_batch():
    X = np.arange(40.0).reshape(10, 4)
    source = HostBatches(X, "cpu", max_rows=3)
    source.start(0, np.array([9, 0, 4]))
    source.start(1, slice(5, 7))
    first, second = source.batch(0, 3), source.batch(1, 2)
    np.testing.assert_array_equal(first, X[[9, 0, 4]])
    np.testing.assert_array_equal(second, X[5:7])
    assert not np.shares_memory(first, second)
    with pytest.raises(ValueError, match="does not fit"):
        source.start(0, np.arange(4))


def test_auto_streams_only_what_would_crowd_the_gpu():
    assert needs_streaming(101, 200) and not needs_streaming(100, 200)
    assert not needs_streaming(10**12, None)  # unknown free memory (the CPU): nothing to save
    X = np.zeros((10, 3))
    assert use_streaming("auto", X, "cpu", "float32") is False
    assert use_streaming(True, X, "cpu", "float32") is True
    assert use_streaming(False, X, "cpu", "float32") is False


def test_auto_on_a_gpu_compares_the_data_with_free_memory(monkeypatch):
    X = np.zeros((1000, 10))  # 40,000 bytes as float32
    monkeypatch.setattr(backends, "free_memory", lambda device: 79_999)
    assert use_streaming("auto", X, "cuda:0", "float32") is True
    monkeypatch.setattr(backends, "free_memory", lambda device: 80_000)
    assert use_streaming("auto", X, "cuda:0", "float32") is False
    assert use_streaming("auto", X, "cuda:0", "float64") is True  # the model's dtype sets the size
    monkeypatch.setattr(backends, "free_memory", lambda device: 10)
    assert use_streaming("auto", X, "cuda:0", "float32", full_batch=True) is False


@pytest.mark.parametrize("bad", ["yes", 1, None, "on"])
def test_a_bad_streaming_value_names_the_parameter(bad):
    X, y = _data(n=20)
    model = nx.MLP([7, 4, 3], output_activation="softmax", seed=0)
    before = [p.copy() for p in model.parameters()]
    with pytest.raises(ValueError, match="streaming must be 'auto', True or False"):
        model.fit(X, y, epochs=1, verbose=0, streaming=bad)
    for p, q in zip(before, model.parameters()):
        np.testing.assert_array_equal(p, q)


def test_streaming_refuses_what_it_cannot_stream():
    import scipy.sparse

    X, y = _data(n=20)
    model = nx.MLP([7, 4, 3], output_activation="softmax", seed=0)
    with pytest.raises(ValueError, match="streaming=True needs X as a dense host array"):
        model.fit(scipy.sparse.csr_matrix(X), y, epochs=1, verbose=0, streaming=True)
    with pytest.raises(ValueError, match="lbfgs"):
        model.fit(X, y, epochs=1, verbose=0, streaming=True, optimizer="lbfgs", batch_size=None)
    strict = nx.MLP([7, 4, 3], output_activation="softmax", seed=0, device="array_api_strict")
    with pytest.raises(ValueError, match="already on array_api_strict"):
        strict.fit(nx.to_device(X, "array_api_strict"), y, epochs=1, verbose=0, streaming=True)


@pytest.mark.skipif(GPU_COUNT == 0, reason="needs a CUDA GPU: the pinned buffers and the copy stream")
def test_on_the_gpu_the_batches_come_through_pinned_buffers_and_a_second_stream():
    import cupy

    X = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    source = HostBatches(X, "cuda:0", max_rows=16)
    assert source.copy_stream is not cupy.cuda.get_current_stream()
    rows = np.arange(63, 47, -1)
    source.start(0, rows)
    got = source.batch(0, 16)
    source.release(0)
    np.testing.assert_array_equal(cupy.asnumpy(got), X[rows])
    source.close()



class _Log(list):
    """What the fake CUDA objects below were asked to do, in order."""


class _Event:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def synchronize(self):
        self.log.append(("host waits for", self.name))


class _Stream:
    def __init__(self, log, name):
        self.log, self.name, self.count = log, name, 0

    def wait_event(self, event):
        self.log.append((f"{self.name} waits for", event.name))

    def record(self):
        self.count += 1
        event = _Event(self.log, f"{self.name}#{self.count}")
        self.log.append(("recorded", event.name))
        return event

    def synchronize(self):
        self.log.append(("host waits for", self.name))


class _DeviceArray:
    def __init__(self, log, data):
        self.log, self.data = log, data

    def __getitem__(self, key):
        return _DeviceArray(self.log, self.data[key])

    def set(self, host, stream):
        self.log.append(("copy on", stream.name))
        self.data[...] = host


def test_the_gpu_protocol_waits_for_each_copy_and_each_step_before_reusing_a_buffer():
    """HostBatches' GPU bookkeeping with stand-ins for CuPy's streams and events: the step waits
    for its batch's copy on the device; a host buffer is refilled only after its last copy is out;
    a device buffer is overwritten only after the step that read it."""
    import types

    log = _Log()
    compute = _Stream(log, "compute")
    X = np.arange(60.0).reshape(20, 3)
    source = HostBatches.__new__(HostBatches)
    source.X, source.device, source.max_rows, source.gpu = X, "cuda:0", 4, True
    source._cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(get_current_stream=lambda: compute))
    source.copy_stream = _Stream(log, "copy")
    source.host = [np.empty((4, 3)) for _ in range(2)]
    source.device_buffers = [_DeviceArray(log, np.full((4, 3), np.nan)) for _ in range(2)]
    source.copied, source.released = [None, None], [None, None]

    batches = [np.array([3, 1, 4, 15]), np.array([9, 2, 6, 5]), slice(7, 11), np.array([19, 0])]
    source.start(0, batches[0])
    for k, rows in enumerate(batches):
        slot = k % 2
        got = source.batch(slot, len(X[rows]))
        np.testing.assert_array_equal(got.data, X[rows])
        assert log[-1] == ("compute waits for", source.copied[slot].name)  # the device waits, not the host
        source.release(slot)
        if k + 1 < len(batches):
            source.start(1 - slot, batches[k + 1])
    source.close()

    def position(entry):
        return log.index(entry)

    # Batch 2 reuses slot 0: its host gather waited for batch 0's copy, and its copy waited for the
    # step that read batch 0 (the first event recorded on the compute stream).
    copies = [i for i, entry in enumerate(log) if entry == ("copy on", "copy")]
    assert len(copies) == 4
    assert position(("host waits for", "copy#1")) < copies[2]
    assert position(("copy waits for", "compute#1")) < copies[2]
    assert position(("copy waits for", "compute#2")) < copies[3]
    assert log[-1] == ("host waits for", "copy")  # close: nothing left in flight
