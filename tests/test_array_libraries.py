"""PyTorch and JAX as array libraries (devices "torch:cpu" and "jax:cpu"): devices, transfers, the
Philox masks, and whole models checked against NumPy's. A library's tests are skipped only where it
does not import. Its GPU devices are checked where one answers."""

import functools
import subprocess
import sys

import array_api_compat
import numpy as np
import pytest
import scipy.sparse

import nn_xp as nx
from nn_xp import backends
from nn_xp.backends import libraries
from nn_xp.nn import layers as L
from nn_xp.nn.philox import _mulhilo_halves, dropout_mask, philox4x32

from .conftest import PARITY_RTOL, relative_difference
from .test_philox import KAT

LIBRARY_DEVICES = ["torch:cpu", "jax:cpu"]


@pytest.fixture(params=LIBRARY_DEVICES)
def library_device(request):
    """A library's CPU device, skipped where the library is not importable."""
    pytest.importorskip(request.param.split(":")[0])
    return request.param


def is_library_array(x, device: str) -> bool:
    """True for an array of `device`'s own library (a torch.Tensor or a jax.Array), not a NumPy one."""
    check = array_api_compat.is_torch_array if device.startswith("torch") else array_api_compat.is_jax_array
    return check(x) and not isinstance(x, np.ndarray)


def data(n=32, n_features=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)  # 3 classes
    return X, y


def classifier(device, dtype, **kwargs):
    return nx.MLP([4, 6, 3], output_activation="softmax", dtype=dtype, device=device, seed=5, **kwargs)


# ---- devices ---------------------------------------------------------------------------------------
def test_device_names_resolve_with_the_plain_names_keeping_their_meaning():
    assert backends.resolve_device("numpy") == "cpu"
    assert backends.resolve_device("NumPy ") == "cpu"
    assert backends.library_of("cpu") == "numpy"
    assert backends.library_of("cuda:1") == "cupy"
    assert backends.library_of("torch:cuda:0") == "torch"
    assert backends.library_of("jax:gpu:2") == "jax"
    if backends.cuda_status()[0] == 0:  # "cupy" is CuPy's GPU, as "cuda" is: refused where it is missing
        for name in ("cupy", "cupy:0", "cuda"):
            with pytest.raises(RuntimeError, match="cannot be used"):
                backends.resolve_device(name)


def test_library_devices_resolve_list_and_name_their_arrays(library_device):
    assert backends.resolve_device(library_device.upper()) == library_device
    assert library_device in nx.available_devices()
    x = nx.to_device(np.arange(6.0).reshape(2, 3), library_device)
    assert is_library_array(x, library_device)
    assert backends.device_of(x) == library_device
    assert backends.get_namespace(x) is nx.namespace(library_device)
    assert nx.available_devices()[0] == "cpu"


def test_an_unknown_device_lists_the_installed_libraries_and_their_devices():
    with pytest.raises(ValueError, match="device must be one of") as error:
        backends.resolve_device("tensorflow:cpu")
    message = str(error.value)
    assert "numpy ('cpu' or 'numpy')" in message and "'tensorflow:cpu'" in message
    for device in LIBRARY_DEVICES:
        library = device.split(":")[0]
        if backends.library_status(library)[0]:
            assert f"{library} ('{device}'" in message
    with pytest.raises(ValueError, match="installed here"):
        backends.resolve_device("torch:tpu")


@pytest.mark.parametrize("library", ["torch", "jax"])
def test_a_library_that_is_not_installed_names_its_extra(library, monkeypatch):
    def missing():
        raise ImportError(f"No module named '{library}'")

    monkeypatch.setattr(libraries, f"import_{library}", missing)
    libraries.library_status.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=rf"pip install 'nn_xp\[{library}\]'"):
            backends.resolve_device(f"{library}:cpu")
        assert not any(d.startswith(f"{library}:") for d in nx.available_devices())
    finally:
        monkeypatch.undo()
        libraries.library_status.cache_clear()


def test_devices_a_library_cannot_see_are_refused_with_its_reason():
    torch = pytest.importorskip("torch")
    if not torch.backends.mps.is_available():
        with pytest.raises(RuntimeError, match="device='torch:mps' cannot be used: .*MPS"):
            backends.resolve_device("torch:mps")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="torch:cuda:1.* cannot be used: .*CUDA"):
            nx.MLP([2, 1], device="torch:cuda:1")
    jax = pytest.importorskip("jax")
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if not gpus:
        with pytest.raises(RuntimeError, match="jax:gpu.* cannot be used: JAX sees no GPU"):
            backends.resolve_device("jax:gpu")


def test_the_libraries_are_imported_only_when_asked_for():
    code = ("import sys, numpy as np, nn_xp as nx\n"
            "m = nx.MLP([3, 4, 2], output_activation='softmax', device='numpy', seed=0)\n"
            "m.fit(np.ones((8, 3)), np.arange(8) % 2, epochs=1, verbose=0)\n"
            "print(sorted(name for name in ('torch', 'jax') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---- transfers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_arrays_travel_between_every_pair_of_libraries_keeping_values_and_dtype(dtype):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    host = (np.arange(12).reshape(3, 4) * 3 - 7).astype(dtype)
    for source in ["cpu", "array_api_strict", *LIBRARY_DEVICES]:
        start = nx.to_device(host, source)
        for target in ["cpu", "array_api_strict", *LIBRARY_DEVICES]:
            moved = nx.to_device(start, target)
            assert backends.device_of(moved) == target, (source, target)
            back = nx.to_numpy(moved)
            assert back.dtype == np.dtype(dtype), (source, target)
            np.testing.assert_array_equal(back, host)


def test_numpy_arrays_are_not_shared_with_jax_and_torch_tensors_move_as_tensors():
    jnp = pytest.importorskip("jax.numpy")
    torch = pytest.importorskip("torch")
    host = np.ones(4, dtype=np.float32)
    on_jax = nx.to_device(host, "jax:cpu")
    host[0] = 5.0  # a later write to the NumPy array must not reach the JAX array
    assert float(on_jax[0]) == 1.0
    tensor = torch.arange(3, dtype=torch.float64)
    assert nx.to_device(tensor, "torch:cpu") is not None and nx.to_numpy(tensor).dtype == np.float64
    assert isinstance(nx.to_device(jnp.arange(3.0), "torch:cpu"), torch.Tensor)


# ---- Philox: the same words and masks on every library ---------------------------------------------
def test_philox_known_answers_on_each_library(library_device):
    xp = nx.namespace(library_device)
    for rounds, counter, key, expected in KAT:
        words = tuple(xp.asarray(np.asarray([c], dtype=np.uint32)) for c in counter)
        out = philox4x32(xp, words, key, rounds=rounds)
        assert tuple(int(nx.to_numpy(o)[0]) for o in out) == expected
        assert all(str(o.dtype).endswith("uint32") for o in out)
        assert tuple(int(nx.to_numpy(o)) for o in philox4x32(xp, counter, key, rounds=rounds)) == expected


@pytest.mark.parametrize("word", ["uint32", "int64"])
def test_the_product_on_16_bit_halves_equals_the_whole_64_bit_product(word):
    """philox._mulhilo_halves (PyTorch, JAX) against Python's exact integers, edge words included."""
    rng = np.random.default_rng(3)
    x = np.concatenate([[0, 1, 0xFFFF, 0x10000, 0xFFFFFFFF, 0xFFFF0000], rng.integers(0, 2**32, 200)])
    for m in (0xD2511F53, 0xCD9E8D57, 0xFFFFFFFF, 1):
        high, low = _mulhilo_halves(m, x.astype(word))
        products = [int(v) * m for v in x]
        assert [int(v) for v in high] == [p >> 32 for p in products]
        assert [int(v) for v in low] == [p & 0xFFFFFFFF for p in products]


def test_dropout_masks_are_bitwise_numpys(library_device):
    rows = np.array([0, 7, 3, 2**32 + 5, 123456789], dtype=np.int64)  # a row index past 32 bits too
    xp = nx.namespace(library_device)
    for rate in (0.1, 0.5, 0.9):
        expected = dropout_mask(nx.namespace("cpu"), (0xDEADBEEF, 0x01234567), 9, 2, rows, 37, rate)
        mask = dropout_mask(xp, (0xDEADBEEF, 0x01234567), 9, 2, nx.to_device(rows, library_device), 37, rate)
        assert is_library_array(mask, library_device)
        np.testing.assert_array_equal(nx.to_numpy(mask), expected)
        assert 0 < expected.mean() < 1


# ---- models ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_same_seed_gives_numpys_initial_weights_bitwise(library_device, dtype):
    reference = classifier("cpu", dtype)
    model = classifier(library_device, dtype)
    for p, q in zip(reference.parameters(), model.parameters(), strict=True):
        assert is_library_array(q, library_device) and backends.device_of(q) == library_device
        assert nx.to_numpy(q).dtype == np.dtype(dtype)
        np.testing.assert_array_equal(nx.to_numpy(q), p)


@functools.cache
def _numpy_fit(dtype):
    X, y = data()
    model = classifier("cpu", dtype, dropout=0.3)
    model.fit(X, y, epochs=2, batch_size=16, l2=1e-3, optimizer="adam", verbose=0)
    return [backends.to_numpy(p) for p in model.parameters()], model.predict_proba(X)


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-12), ("float32", PARITY_RTOL["float32"])])
def test_a_whole_fit_equals_numpys(library_device, dtype, tolerance):
    """Adam, L2, dropout, mini-batches, seed fixed: the same training as on NumPy, to rounding."""
    X, y = data()
    model = classifier(library_device, dtype, dropout=0.3)
    model.fit(X, y, epochs=2, batch_size=16, l2=1e-3, optimizer="adam", verbose=0)
    params, probabilities = _numpy_fit(dtype)
    assert max(relative_difference(p, q) for p, q in zip(model.parameters(), params, strict=True)) <= tolerance
    proba = model.predict_proba(X)
    assert is_library_array(proba, library_device) and backends.device_of(proba) == library_device
    assert relative_difference(proba, probabilities) <= tolerance
    labels = model.predict(X)
    assert is_library_array(labels, library_device)
    optimizer_arrays = _arrays_in(vars(model.optimizer))
    assert optimizer_arrays and all(is_library_array(a, library_device) for a in optimizer_arrays)


def _arrays_in(value) -> list:
    """The arrays held anywhere in nested dicts, lists and tuples (an optimizer's state)."""
    if isinstance(value, dict):
        return [a for v in value.values() for a in _arrays_in(v)]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _arrays_in(v)]
    is_array = not isinstance(value, type) and hasattr(value, "shape") and hasattr(value, "dtype")
    return [value] if is_array else []


# L-BFGS's curvature pairs and line search amplify the products' rounding (other BLAS kernels) more
# than a first-order step does: its bound is looser.
@pytest.mark.parametrize("case, tolerance", [("sgd+weights", PARITY_RTOL["float64"]),
                                             ("rmsprop+batchnorm", PARITY_RTOL["float64"]),
                                             ("lbfgs+layernorm", 1e-8)])
def test_optimizers_weights_and_norm_layers_train_as_on_numpy(library_device, case, tolerance):
    X, y = data()
    optimizer, extra = case.split("+")
    kwargs = dict(epochs=2, optimizer=optimizer, verbose=0, batch_size=None if optimizer == "lbfgs" else 16)
    if extra == "weights":
        kwargs["sample_weight"] = np.linspace(0.5, 2.0, X.shape[0])

    def make(device):
        if extra == "weights":
            return classifier(device, "float64")
        norm = L.BatchNorm(6) if extra == "batchnorm" else L.LayerNorm(6)
        return nx.Sequential([L.Dense(4, 6), norm, L.Dense(6, 3)], output_activation="softmax", dtype="float64",
                             device=device, seed=5)

    reference, model = make("cpu"), make(library_device)
    reference.fit(X, y, **kwargs)
    model.fit(X, y, **kwargs)
    arrays = model.parameters() + model.buffers()
    assert all(is_library_array(a, library_device) for a in arrays)
    # One comparison over all values: a bias that batch normalisation cancels stays at rounding noise.
    flat = np.concatenate([nx.to_numpy(a).ravel() for a in arrays])
    expected = np.concatenate([a.ravel() for a in reference.parameters() + reference.buffers()])
    assert relative_difference(flat, expected) <= tolerance


def test_inputs_of_other_libraries_are_moved_onto_the_models_device(library_device):
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    X, y = data()
    model = classifier(library_device, "float32")
    expected = nx.to_numpy(model.predict_proba(X))
    for given in (torch.asarray(X), jnp.asarray(X.astype(np.float32)), nx.to_device(X, "array_api_strict")):
        out = model.predict_proba(given)
        assert backends.device_of(out) == library_device
        np.testing.assert_allclose(nx.to_numpy(out), expected, rtol=1e-6)
    model.fit(torch.asarray(X), jnp.asarray(y.astype(np.int32)), epochs=1, verbose=0)  # X and y of two libraries
    numpy_model = classifier("cpu", "float32")
    out = numpy_model.predict_proba(nx.to_device(X, library_device))
    assert isinstance(out, np.ndarray)
    with pytest.raises(ValueError, match="move it with nx.to_device"):  # between NumPy and array-api-strict: as before
        numpy_model.predict_proba(nx.to_device(X, "array_api_strict"))


def test_models_move_between_libraries_and_files_load_on_any(library_device, tmp_path):
    X, y = data()
    model = classifier(library_device, "float64")
    model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    expected = nx.to_numpy(model.predict_proba(X))
    model.save(tmp_path / "m.npz")
    other = "torch:cpu" if library_device == "jax:cpu" else "jax:cpu"
    pytest.importorskip(other.split(":")[0])
    for device in ["cpu", "array_api_strict", *LIBRARY_DEVICES]:
        loaded = nx.load(tmp_path / "m.npz", device=device)
        assert backends.device_of(loaded.predict_proba(X)) == device
        np.testing.assert_allclose(nx.to_numpy(loaded.predict_proba(X)), expected, rtol=1e-12)
    model.to(other)
    assert all(backends.device_of(a) == other for a in model.parameters() + _arrays_in(vars(model.optimizer)))
    model.fit(X, y, epochs=1, batch_size=16, verbose=0)  # the optimizer state moved with it
    model.to("cpu")
    assert isinstance(model.predict_proba(X), np.ndarray)


def test_onnx_export_reads_host_copies(library_device, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    X, _ = data()
    model = classifier(library_device, "float32")
    model.to_onnx(tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, {name: X.astype(np.float32)})))
    np.testing.assert_allclose(out["probabilities"], nx.to_numpy(model.predict_proba(X)), rtol=1e-4, atol=1e-6)


def test_what_a_library_device_cannot_do_is_refused_naming_what_works(library_device):
    X, y = data()
    model = classifier(library_device, "float32")
    with pytest.raises(ValueError, match="sparse input needs 'cpu' .*or 'cuda'"):
        model.fit(scipy.sparse.csr_matrix(X), y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="streaming=True .*use streaming=False"):
        model.fit(X, y, epochs=1, streaming=True, verbose=0)
    with pytest.raises(ValueError, match="mixed_float16.* needs NumPy or CuPy arrays.*precision='float32' works"):
        model.fit(X, y, epochs=1, precision="mixed_float16", verbose=0)


def test_a_float64_model_on_jax_turns_on_x64_and_says_so(caplog):
    jax = pytest.importorskip("jax")
    enabled = jax.config.jax_enable_x64
    try:
        jax.config.update("jax_enable_x64", False)
        with caplog.at_level("INFO", logger="nn_xp"):
            model = classifier("jax:cpu", "float64")
        assert str(model.parameters()[0].dtype) == "float64"
        assert jax.config.jax_enable_x64
        assert sum("jax_enable_x64" in r.getMessage() for r in caplog.records) == 1
    finally:
        jax.config.update("jax_enable_x64", enabled)


def test_the_command_line_trains_on_a_library_device(library_device, tmp_path, capsys, monkeypatch):
    from nn_xp.cli import main

    monkeypatch.chdir(tmp_path)  # in this process: the libraries are imported once for the whole file
    code = main(["train", "--dataset", "iris", "--epochs", "1", "--hidden", "6", "--full-batch", "--device",
                 library_device, "--save", str(tmp_path / "m.npz")])
    out = capsys.readouterr().out
    assert code == 0 and f"device {library_device} (float32)" in out
    assert nx.load(tmp_path / "m.npz", device="cpu").layer_sizes[0] == 4


def test_nn_xp_info_lists_the_libraries_and_their_devices(capsys):
    from nn_xp.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    devices_line = next(line for line in out.splitlines() if line.startswith("devices: "))
    for device in LIBRARY_DEVICES:
        library = device.split(":")[0]
        installed = bool(backends.library_status(library)[0])
        assert (device in devices_line) == installed
        assert any(line.startswith(f"{library} ") for line in out.splitlines())


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")  # 3 iterations on purpose
def test_the_scikit_learn_estimators_train_on_a_library_device_as_on_numpy(library_device):
    from nn_xp.sklearn import MLPClassifier

    X, y = data()
    settings = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0, batch_size=16)
    reference = MLPClassifier(**settings, device="cpu").fit(X, y)
    estimator = MLPClassifier(**settings, device=library_device).fit(X, y)  # writes its parameters in
    assert relative_difference(estimator.predict_proba(X), reference.predict_proba(X)) <= PARITY_RTOL["float32"]
