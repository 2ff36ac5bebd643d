import numpy as np
import pytest

import nn_xp as nx
from nn_xp.backends import arrays, devices, tf32

from .conftest import GPU_COUNT


def test_available_devices_lists_cpu_first_and_never_raises():
    devices = nx.available_devices()
    assert devices[0] == "cpu"
    cupy_devices = [d for d in devices[1:] if not d.startswith(("torch:", "jax:"))]
    assert all(d.startswith("cuda:") for d in cupy_devices)
    assert len(cupy_devices) == GPU_COUNT


def test_env_override_wins(monkeypatch):
    monkeypatch.setenv("NN_XP_DEVICE", "cpu")
    assert nx.default_device() == "cpu"
    assert nx.MLP([2, 1], device="auto").device == "cpu"


def test_env_override_is_checked(monkeypatch):
    monkeypatch.setenv("NN_XP_DEVICE", "tpu")
    with pytest.raises(ValueError, match="NN_XP_DEVICE"):
        nx.default_device()


def test_auto_falls_back_to_cpu_without_gpu(monkeypatch):
    monkeypatch.delenv("NN_XP_DEVICE", raising=False)
    monkeypatch.setattr(devices, "cuda_status", lambda: (0, "CuPy is not installed"))
    assert nx.default_device() == "cpu"
    assert devices.resolve_device("auto") == "cpu"


@pytest.mark.parametrize("why", ["CuPy is not installed (ImportError)", "no CUDA GPU found",
                                 "the NVIDIA driver is too old for this CuPy build"])
def test_explicit_cuda_without_gpu_says_why(monkeypatch, why):
    monkeypatch.setattr(devices, "cuda_status", lambda: (0, why))
    for name in ("cuda", "cuda:0"):
        with pytest.raises(RuntimeError, match=why.split(" (")[0]):
            devices.resolve_device(name)


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(devices, "cuda_status", lambda: (1, "ok"))
    with pytest.raises(RuntimeError, match="only 1 GPU"):
        devices.resolve_device("cuda:3")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cuda:-1", "", "metal"])
def test_bad_device_names(bad):
    with pytest.raises(ValueError, match="device"):
        devices.resolve_device(bad)
    with pytest.raises(ValueError, match="device"):
        nx.MLP([2, 1], device=bad)


def test_device_must_be_a_string():
    with pytest.raises(TypeError, match="device"):
        nx.MLP([2, 1], device=0)


def test_namespace_and_get_namespace_on_cpu():
    xp = nx.namespace("cpu")
    a = nx.to_device(np.ones(3), "cpu")
    assert nx.get_namespace(a) is xp


def test_mixing_backends_raises_type_error_naming_both():
    import array_api_strict

    a = np.ones(3)
    b = array_api_strict.ones(3)
    with pytest.raises(TypeError, match="array_api_strict and numpy"):
        nx.get_namespace(a, b)


@pytest.mark.parametrize("source", ["list", "numpy32", "numpy64", "int"])
def test_to_device_and_back_keeps_values_and_dtype(device, source):
    data = {
        "list": [[1.5, 2.0], [3.0, -4.0]],
        "numpy32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "numpy64": np.linspace(0, 1, 5),
        "int": np.arange(4, dtype=np.int64),
    }[source]
    moved = nx.to_device(data, device)
    assert arrays.device_of(moved) == device
    back = nx.to_numpy(moved)
    expected = np.asarray(data)
    assert back.dtype == expected.dtype
    np.testing.assert_array_equal(back, expected)


def test_to_numpy_is_a_copy():
    a = np.ones(3)
    b = nx.to_numpy(a)
    b[0] = 5
    assert a[0] == 1


@pytest.mark.skipif(GPU_COUNT == 0, reason="needs a CUDA GPU")
def test_to_device_cupy_round_trip():
    import cupy

    x = nx.to_device(np.arange(5.0), "cuda:0")
    assert isinstance(x, cupy.ndarray)
    np.testing.assert_array_equal(nx.to_numpy(x), np.arange(5.0))


def test_same_seed_same_weights_on_every_backend(dtype):
    reference = [nx.to_numpy(p) for p in nx.MLP([4, 6, 3], seed=7, dtype=dtype, device="cpu").parameters()]
    for dev in nx.available_devices() + ["array_api_strict"]:
        other = nx.MLP([4, 6, 3], seed=7, dtype=dtype, device=dev).parameters()
        for a, b in zip(reference, other):
            np.testing.assert_array_equal(a, nx.to_numpy(b))
            assert nx.to_numpy(b).dtype == np.dtype(dtype)


def test_different_seeds_differ():
    a = nx.MLP([4, 3], seed=1, device="cpu").parameters()[0]
    b = nx.MLP([4, 3], seed=2, device="cpu").parameters()[0]
    assert not np.array_equal(a, b)


def test_tf32_is_off_unless_asked_for(monkeypatch):
    monkeypatch.setattr(tf32, "_TF32", {"enabled": None})
    monkeypatch.delenv("NN_XP_TF32", raising=False)
    assert tf32.tf32_enabled() is False
    monkeypatch.setenv("NN_XP_TF32", "1")
    assert tf32.tf32_enabled() is True
    tf32.set_tf32(False)  # an explicit choice wins over the environment
    assert tf32.tf32_enabled() is False
    with pytest.raises(TypeError, match="enabled"):
        tf32.set_tf32("yes")


# Each way to name a device, as API.md's table writes them ("[:N]": with or without a GPU index).
DEVICE_SPELLINGS = ("cpu", "numpy", "cuda[:N]", "cupy[:N]", "torch:cpu", "torch:cuda[:N]", "torch:mps", "jax:cpu",
                    "jax:gpu[:N]", "auto")


@pytest.mark.parametrize("spelling", DEVICE_SPELLINGS)
def test_each_documented_device_spelling_is_one_the_grammar_reads(spelling):
    for name in (spelling.replace("[:N]", ""), spelling.replace("[:N]", ":1")):
        assert devices._DEVICE_RE.match(name) or devices._LIBRARY_RE.match(name), name


def _device_doc(where: str) -> str:
    """The text that tells a user which devices `where` takes: a docstring, or a command's --device help."""
    if where.startswith("nn-xp "):
        from nn_xp.cli.parser import build_parser

        command = build_parser()._subparsers._group_actions[0].choices[where.split()[1]]
        return next(action.help for action in command._actions if "--device" in action.option_strings)
    if where in ("MLP", "Sequential"):
        return getattr(nx, where).__doc__
    if where == "Network":
        from nn_xp.nn.network import Network

        return Network.__doc__
    pytest.importorskip("sklearn")
    import nn_xp.sklearn

    return nn_xp.sklearn.__doc__ if where == "nn_xp.sklearn" else getattr(nn_xp.sklearn, where).__doc__


@pytest.mark.parametrize("where", ["MLP", "Sequential", "Network", "MLPClassifier", "MLPRegressor", "nn_xp.sklearn",
                                   "nn-xp train", "nn-xp predict", "nn-xp evaluate"])
def test_the_device_docs_name_every_array_library_s_devices(where):
    text = " ".join(_device_doc(where).split())
    quote = "" if where.startswith("nn-xp ") else '"'
    missing = [s for s in DEVICE_SPELLINGS if f"{quote}{s}{quote}" not in text]
    assert missing == [], f"{where}'s device doc does not name {missing}"
