"""CuPy's ops (cupy_ops.py): the fused kernels agree with their standard twins, launch once, give the
same bits twice, and fall back where they do not apply; training on the GPU keeps a steady memory pool.

The kernel tests run twice where they can:
- "cuda": CuPy on a GPU (skipped without one, the reason shown);
- "cpu": the same CupyOps code with a stand-in `cupy` whose kernels are cupy_kernels.cu compiled
  for the CPU (tests/cuda_on_cpu.py; skipped without g++ and the CUDA headers). It checks the
  kernels' logic and CupyOps' launches (arguments, shapes, scratch), not a GPU's concurrency.
Tolerances against the standard twin: float64 1e-12 and float32 1e-6 (relative to the largest
element, conftest.relative_difference); half precision as stated where it is tested.
"""

import sys
import types

import numpy as np
import pytest

import nn_xp as nx
from nn_xp.backends import Ops, cupy_ops, ops_for
from nn_xp.nn import activations

from . import cuda_on_cpu
from .conftest import GPU_COUNT, GPU_WHY, relative_difference

needs_gpu = pytest.mark.skipif(GPU_COUNT == 0, reason=f"needs a CUDA GPU: {GPU_WHY.split(';')[0]}")
TOLERANCE = {"float64": 1e-12, "float32": 1e-6}
FUSED = ["relu", "sigmoid", "tanh", "linear", {"name": "leaky_relu", "negative_slope": 0.2}]
SHAPES = [(1, 7), (257, 129), (4096, 512)]
NO_ELEMENTWISE = "NumPy's path on CuPy runs cupy.ElementwiseKernels, which the CPU stand-in has not"


def _name(activation) -> str:
    return activation if isinstance(activation, str) else activation["name"]


@pytest.fixture(scope="session")
def cpu_kernels(tmp_path_factory):
    library = cuda_on_cpu.build(tmp_path_factory.mktemp("kernels"))
    if isinstance(library, str):
        pytest.skip(library)
    return library


# What cupy_ops keeps from one cupy module: cleared on each side of a test on the stand-in.
_CACHES = (cupy_ops._module, cupy_ops._kernel, cupy_ops._compiled, cupy_ops._bfloat16_works,
           cupy_ops._multiprocessors)


def _clear_caches():
    for cached in _CACHES:
        cached.cache_clear()


@pytest.fixture(params=["cuda", "cpu"])
def gpu(request, monkeypatch):
    """CupyOps on a GPU or on the CPU stand-in: .ops, .xp, .asarray, .host, .launches (the name
    expression of every raw kernel launched), .where."""
    if request.param == "cuda":
        if GPU_COUNT == 0:
            pytest.skip(f"needs a CUDA GPU: {GPU_WHY.split(';')[0]}")
        import cupy

        xp = nx.namespace("cuda:0")
        ops, asarray, host = ops_for(xp), cupy.asarray, cupy.asnumpy
    else:
        library = request.getfixturevalue("cpu_kernels")
        _clear_caches()
        request.addfinalizer(_clear_caches)  # no stand-in kernel outlives the test
        fake = cuda_on_cpu.fake_cupy(library)
        monkeypatch.setitem(sys.modules, "cupy", fake)
        xp = nx.namespace("cpu")
        ops, asarray, host = cupy_ops.CupyOps(xp), fake.asarray, np.array
    cupy_ops._bfloat16_works()  # its one check launch, before the counting starts
    previous = cupy_ops.set_fused(True)
    request.addfinalizer(lambda: cupy_ops.set_fused(previous))
    launches = []
    kernel = cupy_ops._kernel

    def counted(name):
        def launch(*args, **kwargs):
            launches.append(name)
            return kernel(name)(*args, **kwargs)

        return launch

    monkeypatch.setattr(cupy_ops, "_kernel", counted)
    return types.SimpleNamespace(ops=ops, xp=xp, asarray=asarray, host=host, launches=launches, where=request.param)


def _pair(gpu, *host_arrays):
    """Each host array twice on the device: one for the standard twin, one for the fused kernel."""
    return [gpu.asarray(a) for a in host_arrays], [gpu.asarray(a) for a in host_arrays]


def _bitwise_equal(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


# ---- bias and activation forward ------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("activation", FUSED, ids=_name)
def test_bias_activate_kernel_matches_the_standard(gpu, dtype, activation, shape):
    rng = np.random.default_rng(1)
    act = activations.get_activation(activation)
    (Z_std, b_std), (Z, b) = _pair(gpu, rng.normal(size=shape).astype(dtype), rng.normal(size=shape[1]).astype(dtype))
    A_std, _ = Ops(gpu.xp).bias_activate(act, Z_std, b_std)
    A, kept = gpu.ops.bias_activate(act, Z, b)
    assert gpu.launches == [f"nn_xp::bias_activate<{cupy_ops.FLOAT_TYPES[dtype]}>"]
    assert A is Z  # in place
    assert kept is (Z if act.name == "leaky_relu" else None)  # A stands in for leaky_relu's Z
    assert relative_difference(A, A_std) <= TOLERANCE[dtype]


# ---- activation backward and bias gradient ---------------------------------------------------------
def _backward_inputs(gpu, act, shape, dtype, seed=2):
    """(dA, A, kept) on the device, A from the standard forward."""
    rng = np.random.default_rng(seed)
    Z, b = gpu.asarray(rng.normal(size=shape).astype(dtype)), gpu.asarray(rng.normal(size=shape[1]).astype(dtype))
    A, kept = Ops(gpu.xp).bias_activate(act, Z, b)
    # Copied, as they would arrive: the CPU stand-in's np.where gives plain NumPy arrays.
    A, kept = gpu.asarray(gpu.host(A)), None if kept is None else gpu.asarray(gpu.host(kept))
    return gpu.asarray(rng.normal(size=shape).astype(dtype)), A, kept


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("activation", FUSED, ids=_name)
def test_backward_bias_kernel_matches_the_standard_and_gives_the_same_bits_twice(gpu, dtype, activation, shape):
    act = activations.get_activation(activation)
    dA, A, kept = _backward_inputs(gpu, act, shape, dtype)
    dZ_std, db_std = Ops(gpu.xp).backward_bias(act, dA, kept, A)
    results = []
    for _ in range(2):
        db = gpu.asarray(np.full(shape[1], 123.0, dtype))  # overwritten, not added to
        dZ, db_out = gpu.ops.backward_bias(act, gpu.asarray(gpu.host(dA)), kept, A, db=db)
        assert dZ.shape == shape and db_out is db
        results.append((gpu.host(dZ), gpu.host(db)))
    assert gpu.launches == [f"nn_xp::backward_bias<{cupy_ops.FLOAT_TYPES[dtype]}>"] * 2
    (dZ, db), (dZ_again, db_again) = results
    assert relative_difference(dZ, dZ_std) <= TOLERANCE[dtype]
    # db is the sum of the stored dZ, to the tolerance; it agrees with the twin's db to the tolerance
    # plus the twin's own summation error (NumPy adds float32 rows one after another).
    assert relative_difference(db, np.sum(dZ, axis=0, dtype=np.float64)) <= TOLERANCE[dtype]
    twin_error = relative_difference(db_std, np.sum(gpu.host(dZ_std), axis=0, dtype=np.float64))
    assert relative_difference(db, db_std) <= TOLERANCE[dtype] + twin_error
    assert _bitwise_equal(dZ, dZ_again) and _bitwise_equal(db, db_again)


# ---- softmax cross-entropy ---------------------------------------------------------------------------
# Lanes per row: 4 for 10 classes, 32 for 1000, 1 for 3, 2 for 6, 8 for 20.
SOFTMAX_SHAPES = [(1, 10), (257, 10), (4096, 10), (257, 1000), (4096, 1000), (33, 3), (65, 6), (40, 20)]


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
@pytest.mark.parametrize("weighting", ["mean", "column"])
def test_softmax_cross_entropy_kernel_matches_the_standard_and_gives_the_same_bits_twice(gpu, dtype, shape,
                                                                                         weighting):
    n, k = shape
    rng = np.random.default_rng(3)
    Z_host = (rng.normal(size=shape) * 4).astype(dtype)
    Y_host = np.eye(k, dtype=dtype)[rng.integers(0, k, n)]
    Y_host[0] = rng.dirichlet(np.ones(k))  # a row of probabilities too
    if weighting == "mean":
        weight = 1 / n
    else:
        w = rng.uniform(0.1, 2.0, size=(n, 1))
        weight = gpu.asarray((w / w.sum()).astype(dtype))
    Y = gpu.asarray(Y_host)
    L_std, dZ_std, _ = Ops(gpu.xp).softmax_cross_entropy(gpu.asarray(Z_host), Y, weight)
    results = []
    for _ in range(2):
        Z, out = gpu.asarray(Z_host), gpu.asarray(np.zeros(shape, dtype))
        L, dZ, logits = gpu.ops.softmax_cross_entropy(Z, Y, weight, out=out)
        assert dZ is out and logits is Z and L.shape == () and L.dtype == Z.dtype
        results.append((gpu.host(L), gpu.host(dZ), gpu.host(logits)))
    assert gpu.launches == [f"nn_xp::softmax_cross_entropy<{cupy_ops.FLOAT_TYPES[dtype]}>"] * 2
    (L, dZ, logits), (L_again, dZ_again, logits_again) = results
    assert abs(float(L) - float(L_std)) <= TOLERANCE[dtype] * abs(float(L_std))
    assert relative_difference(dZ, dZ_std) <= TOLERANCE[dtype]
    np.testing.assert_array_equal(np.argmax(logits, axis=1), np.argmax(Z_host, axis=1))
    assert relative_difference(logits, Z_host - Z_host.max(axis=1, keepdims=True)) <= TOLERANCE[dtype]
    assert _bitwise_equal(L, L_again) and _bitwise_equal(dZ, dZ_again) and _bitwise_equal(logits, logits_again)


def test_softmax_cross_entropy_kernel_allocates_dZ_without_out(gpu):
    rng = np.random.default_rng(4)
    Z_host, Y_host = rng.normal(size=(9, 5)), np.eye(5)[rng.integers(0, 5, 9)]
    L_std, dZ_std, _ = Ops(gpu.xp).softmax_cross_entropy(gpu.asarray(Z_host), gpu.asarray(Y_host), 1 / 9)
    L, dZ, _ = gpu.ops.softmax_cross_entropy(gpu.asarray(Z_host), gpu.asarray(Y_host), 1 / 9)
    assert gpu.launches == ["nn_xp::softmax_cross_entropy<double>"]
    assert abs(float(L) - float(L_std)) <= 1e-12 * abs(float(L_std))
    assert relative_difference(dZ, dZ_std) <= 1e-12


# ---- the batch gather -----------------------------------------------------------------------------------
@pytest.mark.parametrize("index_dtype", ["int64", "int32"])
def test_take_batch_gathers_x_y_and_weights_in_one_launch(gpu, index_dtype):
    rng = np.random.default_rng(5)
    hosts = [rng.normal(size=(50, 20)).astype(np.float32), rng.normal(size=(50, 3)).astype(np.float32), None,
             rng.uniform(size=(50, 1)).astype(np.float32)]
    arrays = [None if a is None else gpu.asarray(a) for a in hosts]
    rows = gpu.asarray(rng.permutation(50)[:37].astype(index_dtype))
    outs = [gpu.asarray(np.zeros((37, 20), np.float32)), None, None, None]
    got = gpu.ops.take_batch(arrays, rows, outs)
    assert gpu.launches == [f"nn_xp::take_rows<unsigned int, {cupy_ops.INDEX_TYPES[index_dtype]}>"]
    assert got[0] is outs[0] and got[2] is None
    expected = Ops(gpu.xp).take_batch(arrays, rows)
    for a, b in zip(got, expected):
        assert (a is None and b is None) or _bitwise_equal(gpu.host(a), gpu.host(b))


def test_take_batch_launches_once_per_element_size_and_four_arrays(gpu):
    rng = np.random.default_rng(6)
    hosts = [rng.normal(size=(30, 4)), rng.normal(size=(30, 2)).astype(np.float16), rng.normal(size=(30, 3)) > 0,
             *(rng.normal(size=(30, w)).astype(np.float32) for w in (1, 2, 3, 4, 5))]
    arrays = [gpu.asarray(a) for a in hosts]
    rows = gpu.asarray(np.array([29, 0, 7, 7, 13], dtype=np.int64))
    got = gpu.ops.take_batch(arrays, rows)
    assert sorted(gpu.launches) == sorted(f"nn_xp::take_rows<{U}, long long>" for U in (
        "unsigned long long", "unsigned short", "unsigned char", "unsigned int", "unsigned int"))
    for a, host in zip(got, hosts):
        assert _bitwise_equal(gpu.host(a), host[[29, 0, 7, 7, 13]])


def test_take_batch_never_reads_outside_the_arrays(gpu):
    """Rows must be valid; where they are not, the kernel clips them, as NumpyOps' take(mode="clip")."""
    A = np.arange(18, dtype=np.float32).reshape(6, 3)
    rows = np.array([-2, 0, 9, 5], dtype=np.int64)
    got = gpu.ops.take_batch([gpu.asarray(A)], gpu.asarray(rows))
    assert gpu.launches == ["nn_xp::take_rows<unsigned int, long long>"]
    assert _bitwise_equal(gpu.host(got[0]), np.take(A, rows, axis=0, mode="clip"))


def test_take_batch_falls_back_for_arrays_the_kernel_cannot_take(gpu):
    rng = np.random.default_rng(7)
    X = gpu.asarray(rng.normal(size=(8, 6)).astype(np.float32))
    strided = X[:, ::2]  # not C-contiguous
    rows = gpu.asarray(np.array([3, 1], dtype=np.int64))
    got = gpu.ops.take_batch([strided, X], rows)
    assert gpu.launches == ["nn_xp::take_rows<unsigned int, long long>"]  # X alone
    assert _bitwise_equal(gpu.host(got[0]), gpu.host(strided)[[3, 1]])
    assert _bitwise_equal(gpu.host(got[1]), gpu.host(X)[[3, 1]])


# ---- empty inputs and fallbacks ------------------------------------------------------------------------
def test_empty_inputs_launch_nothing(gpu):
    relu = activations.get_activation("relu")
    Z = gpu.asarray(np.zeros((0, 5), np.float32))
    A, _ = gpu.ops.bias_activate(relu, Z, gpu.asarray(np.ones(5, np.float32)))
    assert A.shape == (0, 5)
    db = gpu.asarray(np.full(5, 7.0, np.float32))
    dZ, db = gpu.ops.backward_bias(relu, gpu.asarray(np.zeros((0, 5), np.float32)), None, A, db=db)
    assert dZ.shape == (0, 5) and not gpu.host(db).any()
    L, dZ, _ = gpu.ops.softmax_cross_entropy(gpu.asarray(np.zeros((0, 10))), gpu.asarray(np.zeros((0, 10))), 1.0)
    assert float(L) == 0.0 and dZ.shape == (0, 10)
    got = gpu.ops.take_batch([gpu.asarray(np.ones((4, 3)))], gpu.asarray(np.zeros(0, np.int64)))
    assert got[0].shape == (0, 3)
    assert gpu.launches == []


def test_non_contiguous_arrays_fall_back_to_numpys_path(gpu, dtype):
    rng = np.random.default_rng(8)
    relu = activations.get_activation("relu")
    Z_host, b_host = rng.normal(size=(6, 9)).astype(dtype), rng.normal(size=6).astype(dtype)
    Z = gpu.asarray(Z_host).T  # (9, 6), Fortran order
    A, kept = gpu.ops.bias_activate(relu, Z, gpu.asarray(b_host))
    assert kept is None and relative_difference(A, np.maximum(Z_host.T + b_host, 0)) <= TOLERANCE[dtype]
    Y = gpu.asarray(np.eye(6, dtype=dtype)[rng.integers(0, 6, 9)])
    L_std, dZ_std, _ = Ops(gpu.xp).softmax_cross_entropy(gpu.asarray(Z_host.T.copy()), Y, 1 / 9)
    L, dZ, _ = gpu.ops.softmax_cross_entropy(gpu.asarray(Z_host).T, Y, 1 / 9)
    assert abs(float(L) - float(L_std)) <= TOLERANCE[dtype] * abs(float(L_std))
    assert relative_difference(dZ, dZ_std) <= TOLERANCE[dtype]
    assert gpu.launches == []


@pytest.mark.parametrize("activation", FUSED, ids=_name)
def test_set_fused_false_launches_none_of_them_and_gives_the_same_numbers(gpu, dtype, activation):
    if gpu.where == "cpu" and _name(activation) in ("relu", "sigmoid", "tanh"):
        pytest.skip(NO_ELEMENTWISE)
    act = activations.get_activation(activation)
    rng = np.random.default_rng(9)
    Z_host, b_host = rng.normal(size=(65, 33)).astype(dtype), rng.normal(size=33).astype(dtype)
    dA_host = rng.normal(size=(65, 33)).astype(dtype)
    Y_host = np.eye(33, dtype=dtype)[rng.integers(0, 33, 65)]
    X_host = rng.normal(size=(80, 7)).astype(dtype)
    rows = gpu.asarray(rng.permutation(80)[:65])
    results = {}
    for fused in (True, False):
        cupy_ops.set_fused(fused)
        A, kept = gpu.ops.bias_activate(act, gpu.asarray(Z_host), gpu.asarray(b_host))
        dZ, db = gpu.ops.backward_bias(act, gpu.asarray(dA_host), kept, A, db=gpu.asarray(np.zeros(33, dtype)))
        L, dZ_out, _ = gpu.ops.softmax_cross_entropy(gpu.asarray(Z_host), gpu.asarray(Y_host), 1 / 65)
        batch = gpu.ops.take_batch([gpu.asarray(X_host), None], rows)
        results[fused] = [gpu.host(a) for a in (A, dZ, db, L, dZ_out, batch[0])]
        assert batch[1] is None
        assert len(gpu.launches) == (4 if fused else 0)
        gpu.launches.clear()
    for a, b in zip(results[True], results[False]):
        assert relative_difference(a, b) <= TOLERANCE[dtype]


# ---- mixed precision ---------------------------------------------------------------------------------
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("activation", FUSED, ids=_name)
def test_half_precision_kernels_match_the_float32_round_trip(gpu, half, activation):
    """The kernels and the emulation (numpy_ops._HalfPrecision, which half() falls back to) both load
    half precision, compute in float32 and round once; they may differ where float32 exp/tanh differ
    in the last bit, and in the order of db's float32 sum. Bounds, with ulp = 2^-10 (float16) or 2^-7
    (bfloat16): each element of A and dZ within one ulp (or the smallest subnormal); each db_j within
    2 ulp (sum_i |dZ_ij| + |db_j|)."""
    if half == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        if not cupy_ops._bfloat16_works():
            pytest.skip("this CuPy's bfloat16 arrays did not pass the kernels' check: NumPy's path is used")
        dtype, ulp = np.dtype(ml_dtypes.bfloat16), 2.0**-7
    else:
        dtype, ulp = np.dtype(np.float16), 2.0**-10
    ops = gpu.ops.half()
    act = activations.get_activation(activation)
    rng = np.random.default_rng(10)
    Z_host, b_host = rng.normal(size=(257, 129)).astype(dtype), rng.normal(size=129).astype(dtype)
    dA_host = rng.normal(size=(257, 129)).astype(dtype)
    results = {}
    for fused in (False, True):
        cupy_ops.set_fused(fused)
        A, kept = ops.bias_activate(act, gpu.asarray(Z_host), gpu.asarray(b_host))
        if not fused:  # both backward passes start from these: 1 - A * A would magnify A's last bit
            A_host, kept_host = gpu.host(A), None if kept is None else gpu.host(kept)
        kept = None if kept_host is None else gpu.asarray(kept_host)
        dZ, db = ops.backward_bias(act, gpu.asarray(dA_host), kept, gpu.asarray(A_host),
                                   db=gpu.asarray(np.zeros(129, dtype)))
        results[fused] = [gpu.host(a).astype(np.float64) for a in (A, dZ, db)]
    T = cupy_ops.FLOAT_TYPES.get(half, cupy_ops.BFLOAT16)
    assert gpu.launches == [f"nn_xp::bias_activate<{T}>", f"nn_xp::backward_bias<{T}>"]
    (A, dZ, db), (A_e, dZ_e, db_e) = results[True], results[False]
    tiny = float(np.finfo(dtype).smallest_subnormal)  # where one ulp is more than a relative one
    assert np.all(np.abs(A - A_e) <= ulp * np.abs(A_e) + tiny)
    assert np.all(np.abs(dZ - dZ_e) <= ulp * np.abs(dZ_e) + tiny)
    assert np.all(np.abs(db - db_e) <= 2 * ulp * (np.abs(dZ_e).sum(axis=0) + np.abs(db_e)))


@needs_gpu
def test_half_ops_multiply_with_cupy_and_keep_its_arrays():
    import cupy

    ops = ops_for(nx.namespace("cuda:0")).half()
    assert type(ops).__name__ == "_HalfCupyOps" and ops.raw is cupy and ops.matmul is cupy.matmul
    A, B = cupy.ones((3, 4), cupy.float16), cupy.ones((4, 2), cupy.float16)
    assert isinstance(ops.matmul(A, B), cupy.ndarray)


# ---- the older elementwise kernels and training ------------------------------------------------------
@needs_gpu
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activation_backward_kernel_matches_the_standard_backward(name, dtype):
    import cupy

    xp = nx.namespace("cuda:0")
    rng = np.random.default_rng(0)
    Z = cupy.asarray(rng.normal(size=(257, 129)).astype(dtype))
    act = activations.get_activation(name)
    A = act.forward(xp, Z)
    dA = cupy.asarray(rng.normal(size=(257, 129)).astype(dtype))
    expected = act.backward(xp, dA, Z, A)
    got, _ = ops_for(xp).backward_bias(act, dA.copy(), Z, A)
    assert relative_difference(got, expected) <= (1e-6 if dtype == "float32" else 1e-14)


# The optimizer kernels are checked against the standard ops in tests/test_ops.py (device cuda:0).


@needs_gpu
def test_memory_pool_reaches_a_steady_state():
    import cupy

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(4096, 784)).astype(np.float32), rng.integers(0, 10, 4096)
    model = nx.MLP([784, 512, 256, 10], output_activation="softmax", device="cuda:0", seed=0)
    pool = cupy.get_default_memory_pool()
    model.fit(X, y, epochs=1, batch_size=128, verbose=0)
    after_first = pool.used_bytes()
    model.fit(X, y, epochs=4, batch_size=128, verbose=0)
    assert pool.used_bytes() == after_first


@needs_gpu
@pytest.mark.parametrize("fused", [True, False])
def test_training_on_the_gpu_matches_the_cpu(fused):
    previous = cupy_ops.set_fused(fused)
    try:
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(512, 20)), rng.integers(0, 4, 512)
        models = [nx.MLP([20, 32, 4], output_activation="softmax", dtype="float64", device=d, seed=0)
                  for d in ("cpu", "cuda:0")]
        for model in models:
            model.fit(X, y, epochs=3, batch_size=64, verbose=0)
    finally:
        cupy_ops.set_fused(previous)
    for a, b in zip(*(m.parameters() for m in models)):
        assert relative_difference(b, a) <= 1e-10


def test_kernels_that_do_not_compile_leave_numpys_path_with_a_warning(monkeypatch):
    """A CuPy whose NVRTC cannot build cupy_kernels.cu (a missing header, say) must not stop
    training: one RuntimeWarning with the reason, and the fused kernels are off from then on."""
    def broken(bfloat16):
        raise RuntimeError("catastrophic error: cannot open source file cuda_fp16.h")

    _clear_caches()
    monkeypatch.setattr(cupy_ops, "_module", broken)
    previous = cupy_ops.set_fused(True)
    try:
        with pytest.warns(RuntimeWarning, match="did not compile .*cuda_fp16.h"):
            assert cupy_ops._fused_activation(activations.get_activation("relu")) is None
        assert cupy_ops.fused_enabled() is False
    finally:
        cupy_ops.set_fused(previous)
        _clear_caches()
