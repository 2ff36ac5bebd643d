"""Bad input raises ValueError/TypeError naming the parameter, before any work, and changes nothing."""

import copy
import os
import subprocess
import sys

import array_api_strict
import numpy as np
import pytest

import nn_xp as nx
from nn_xp.optim import SGD, Adam, AdamW, RMSprop
from nn_xp.optim.schedules import CosineWithWarmup, ExponentialDecay, ReduceOnPlateau, StepDecay, get_schedule
from nn_xp.training.callbacks import Callback, EarlyStopping, ModelCheckpoint

X3 = np.random.default_rng(0).normal(size=(6, 3))

CONSTRUCTOR_CASES = [
    # (kwargs, exception, words the message must contain)
    (dict(layer_sizes=[3]), ValueError, "layer_sizes"),
    (dict(layer_sizes=[]), ValueError, "layer_sizes"),
    (dict(layer_sizes=[3, 0, 1]), ValueError, "layer_sizes[1]"),
    (dict(layer_sizes=[3, -2, 1]), ValueError, "layer_sizes[1]"),
    (dict(layer_sizes=[3, 2.5, 1]), TypeError, "layer_sizes[1]"),
    (dict(layer_sizes=[3, "4", 1]), TypeError, "layer_sizes[1]"),
    (dict(layer_sizes=[3, True, 1]), TypeError, "layer_sizes[1]"),
    (dict(layer_sizes="3 4 1"), TypeError, "layer_sizes"),
    (dict(layer_sizes=None), TypeError, "layer_sizes"),
    (dict(layer_sizes=[3, 4, 1], activation="swish2"), ValueError, "relu"),
    (dict(layer_sizes=[3, 4, 1], activation=["relu", "tanh"]), ValueError, "expected 1"),
    (dict(layer_sizes=[3, 4, 4, 1], activation=["relu"]), ValueError, "expected 2"),
    (dict(layer_sizes=[3, 4, 1], activation=3), TypeError, "activation"),
    (dict(layer_sizes=[3, 4, 1], activation={"name": "leaky_relu", "negative_slope": -1}), ValueError,
     "negative_slope"),
    (dict(layer_sizes=[3, 4, 1], output_activation="argmax"), ValueError, "output_activation"),
    (dict(layer_sizes=[3, 4, 1], init="orthogonal"), ValueError, "init"),
    (dict(layer_sizes=[3, 4, 1], dtype="float16"), ValueError, "dtype"),
    (dict(layer_sizes=[3, 4, 1], dtype="int32"), ValueError, "float32"),
    (dict(layer_sizes=[3, 4, 1], device="tpu"), ValueError, "device"),
    (dict(layer_sizes=[3, 4, 1], seed=-1), ValueError, "seed"),
    (dict(layer_sizes=[3, 4, 1], seed="zero"), ValueError, "seed"),
]


@pytest.mark.parametrize("kwargs,exception,words", CONSTRUCTOR_CASES)
def test_constructor_rejects(kwargs, exception, words):
    with pytest.raises(exception) as info:
        nx.MLP(**kwargs)
    assert words in str(info.value)


def _model(**kw):
    return nx.MLP([3, 4, 2], output_activation="softmax", device="cpu", seed=0, **kw)


CALL_CASES = [
    # (X, y, exception, words)
    (X3[0], [0] * 6, ValueError, "2-D"),
    (X3[None], [0] * 6, ValueError, "2-D"),
    (X3[:, :2], [0] * 6, ValueError, "layer_sizes[0]=3"),
    (np.zeros((0, 3)), [], ValueError, "no samples"),
    (np.full((6, 3), "a"), [0] * 6, TypeError, "numeric"),
    ([["1", "2", "3"]] * 6, [0] * 6, TypeError, "numeric"),
    (X3.astype(bool), [0] * 6, TypeError, "numeric"),
    (np.where(np.eye(6, 3) > 0, np.nan, X3), [0] * 6, ValueError, "NaN"),
    (np.where(np.eye(6, 3) > 0, np.inf, X3), [0] * 6, ValueError, "infinite"),
    (None, [0] * 6, TypeError, "X"),
    (X3, [0] * 5, ValueError, "6 rows"),
    (X3, [0, 1, 2, 0, 1, 0], ValueError, "outside [0, 2)"),
    (X3, [0, 1, -1, 0, 1, 0], ValueError, "outside [0, 2)"),
    (X3, [0, 1, 0.5, 0, 1, 0], ValueError, "integer class labels"),
    (X3, np.zeros((6, 3)), ValueError, "(6, 2)"),
    (X3, ["a"] * 6, TypeError, "y must be numeric"),
    (X3, [0, 1, np.nan, 0, 1, 0], ValueError, "NaN"),
]


@pytest.mark.parametrize("X,y,exception,words", CALL_CASES)
def test_loss_and_grads_rejects_and_leaves_the_model_alone(X, y, exception, words):
    model = _model()
    before = [p.copy() for p in model.parameters()]
    with pytest.raises(exception) as info:
        model.loss_and_grads(X, y)
    assert words in str(info.value)
    for a, b in zip(before, model.parameters()):
        np.testing.assert_array_equal(a, b)


def test_loss_names_are_checked():
    model = _model()
    with pytest.raises(ValueError, match="loss must be one of"):
        model.loss_and_grads(X3, [0] * 6, loss="hinge")
    with pytest.raises(ValueError, match="needs output_activation='sigmoid'"):
        model.loss_and_grads(X3, [0] * 6, loss="binary_cross_entropy")


def test_binary_cross_entropy_needs_two_classes():
    model = nx.MLP([3, 4, 1], output_activation="sigmoid", device="cpu", seed=0)
    with pytest.raises(ValueError, match="two classes"):
        model.loss_and_grads(X3, [0, 1, 2, 0, 1, 0])


def test_forward_rejects_an_array_from_another_backend():
    import array_api_strict

    model = _model()
    with pytest.raises(ValueError, match="on device 'array_api_strict' but the model is on 'cpu'"):
        model.forward(array_api_strict.asarray(X3))


# =================================================================================================
# The rest of the public API: fit, predict, evaluate, save, load, optimizers, schedules, callbacks
# and the command line. Each malformed call raises the documented type, names the parameter, and
# leaves the model exactly as it was (parameters bit for bit, optimizer, history, generator).
# =================================================================================================
Y3 = np.array([0, 1, 2, 0, 1, 2])
X_BIG = np.array([[1e300, 0, 0]] * 6)  # finite in float64, infinite once in the model's float32


def _trained():
    """A model with an optimizer, a history and a used generator: more state that must not change."""
    model = nx.MLP([3, 4, 3], output_activation="softmax", device="cpu", seed=0)
    model.fit(X3, Y3, optimizer="adam", epochs=2, batch_size=3, verbose=0)
    return model


def _state(model):
    """Everything a failed call must leave alone."""
    optimizer = model.optimizer
    return {
        "params": [nx.to_numpy(p).tobytes() for p in model.parameters()],
        "optimizer": None if optimizer is None else (id(optimizer), optimizer.learning_rate, optimizer.step_count,
                                                     [a.tobytes() for arrays in optimizer.state_dict()["state"].values()
                                                      for a in arrays]),
        "history": None if model.history is None else copy.deepcopy((model.history.history, model.history.epoch,
                                                                     model.history.stop_reason)),
        "rng": model.rng.bit_generator.state,
        "loss": model.loss,
        "preprocessing": copy.deepcopy(model.preprocessing),
    }


def _equal_states(a, b):
    """Equal, where history floats compare with NaN == NaN (epoch_time holds only finite values)."""
    assert a["params"] == b["params"] and a["optimizer"] == b["optimizer"] and a["rng"] == b["rng"]
    assert a["loss"] == b["loss"] and a["preprocessing"] == b["preprocessing"]
    assert repr(a["history"]) == repr(b["history"])


class _StopAfterOneEpoch(Callback):
    def on_epoch_end(self, epoch, logs):
        self.model.stop_training = True


FIT_CASES = [
    # (description, arguments of fit, exception, words in the message)
    ("X with NaN", dict(X=np.where(np.eye(6, 3) > 0, np.nan, X3)), ValueError, "X contains NaN"),
    ("X beyond float32", dict(X=X_BIG), ValueError, "too large for float32"),
    ("X 1-D", dict(X=X3[:, 0]), ValueError, "X must be 2-D"),
    ("X empty", dict(X=np.zeros((0, 3)), y=np.zeros(0)), ValueError, "X has no samples"),
    ("X strings", dict(X=np.full((6, 3), "1.0")), TypeError, "X must be numeric"),
    ("X complex", dict(X=X3 + 1j), TypeError, "X must be numeric"),
    ("X ragged", dict(X=[[1, 2, 3], [4, 5]] * 3), TypeError, "X must be a numeric array"),
    ("X a dict", dict(X={"a": 1}), TypeError, "X must be numeric"),
    ("X on another device", dict(X=array_api_strict.asarray(X3)), ValueError, "X is on device 'array_api_strict'"),
    ("y on another device", dict(y=array_api_strict.asarray(Y3)), ValueError, "y is on device 'array_api_strict'"),
    ("y with inf", dict(y=np.array([0, 1, np.inf, 0, 1, 2])), ValueError, "y contains NaN or infinite"),
    ("y NaN", dict(y=np.array([0, 1, np.nan, 0, 1, 2])), ValueError, "y contains NaN"),
    ("y strings", dict(y=np.array(["a", "b", "c"] * 2)), TypeError, "y must be numeric"),
    ("y objects", dict(y=np.array([None] * 6)), TypeError, "y must be numeric"),
    ("y booleans", dict(y=Y3 > 0), TypeError, "y must be numeric"),
    ("y too short", dict(y=Y3[:4]), ValueError, "y must have 6 rows"),
    ("y fractional labels", dict(y=Y3 + 0.5), ValueError, "integer class labels"),
    ("y label out of range", dict(y=Y3 + 1), ValueError, "outside [0, 3)"),
    ("y one-hot too wide", dict(y=np.eye(4)[[0, 1, 2, 3, 0, 1]]), ValueError, "(6, 3)"),
    ("y 3-D", dict(y=Y3[:, None, None]), ValueError, "y must have 6 rows"),
    ("epochs 0", dict(epochs=0), ValueError, "epochs"),
    ("epochs None", dict(epochs=None), TypeError, "epochs"),
    ("epochs a string", dict(epochs="10"), TypeError, "epochs"),
    ("epochs True", dict(epochs=True), TypeError, "epochs"),
    ("batch_size 0", dict(batch_size=0), ValueError, "batch_size"),
    ("batch_size True", dict(batch_size=True), TypeError, "batch_size"),
    ("batch_size 1.5", dict(batch_size=1.5), TypeError, "batch_size"),
    ("learning_rate a string", dict(learning_rate="0.1"), TypeError, "learning_rate"),
    ("learning_rate True", dict(learning_rate=True), TypeError, "learning_rate"),
    ("learning_rate -inf", dict(learning_rate=-np.inf), ValueError, "learning_rate"),
    ("learning_rate 1e400", dict(learning_rate=1e400), ValueError, "learning_rate"),
    ("validation_split leaves none", dict(validation_split=0.1), ValueError, "validation_split=0.1 leaves 0 of 6"),
    ("validation_split a string", dict(validation_split="0.2"), ValueError, "validation_split"),
    ("validation_split NaN", dict(validation_split=np.nan), ValueError, "validation_split"),
    ("both validations", dict(validation_split=0.5, validation_data=(X3, Y3)), ValueError, "either validation_data"),
    ("validation_data of four", dict(validation_data=(X3, Y3, Y3, Y3)), TypeError,
     "validation_data must be a pair"),
    ("validation weights", dict(validation_data=(X3, Y3, [1.0])), ValueError,
     "validation_data[2] must have shape"),
    ("negative weights", dict(sample_weight=-np.ones(len(X3))), ValueError, "sample_weight must hold finite weights"),
    ("zero weights", dict(sample_weight=np.zeros(len(X3))), ValueError, "sample_weight must not be all zero"),
    ("class weight kind", dict(class_weight="even"), TypeError, "class_weight must be None, 'balanced' or a dict"),
    ("validation_data with NaN", dict(validation_data=(X3 * np.nan, Y3)), ValueError,
     "validation_data[0] contains NaN"),
    ("validation_data on another device", dict(validation_data=(array_api_strict.asarray(X3), Y3)), ValueError,
     "validation_data[0] is on device"),
    ("shuffle a string", dict(shuffle="no"), TypeError, "shuffle"),
    ("shuffle None", dict(shuffle=None), TypeError, "shuffle"),
    ("verbose True", dict(verbose=True), ValueError, "verbose"),
    ("verbose_epoch 0", dict(verbose_epoch=0), ValueError, "verbose_epoch"),
    ("clip_value negative", dict(clip_value=-1.0), ValueError, "clip_value"),
    ("clip_norm inf", dict(clip_norm=np.inf), ValueError, "clip_norm"),
    ("clip_norm a string", dict(clip_norm="1"), TypeError, "clip_norm"),
    ("optimizer a number", dict(optimizer=42), TypeError, "optimizer"),
    ("optimizer a class", dict(optimizer=Adam), TypeError, "optimizer"),
    ("optimizer of another model", dict(optimizer="other"), ValueError, "optimizer was built for another"),
    ("schedule a number", dict(schedule=0.5), TypeError, "schedule"),
    ("schedule unknown", dict(schedule="warm-restarts"), ValueError, "schedule"),
    ("callbacks a string", dict(callbacks="early_stopping"), TypeError, "callbacks"),
    ("callbacks a class", dict(callbacks=[EarlyStopping]), TypeError, "callbacks[0]"),
    ("loss for another output", dict(loss="binary_cross_entropy"), ValueError, "loss='binary_cross_entropy' needs"),
    ("loss a list", dict(loss=["mse"]), ValueError, "loss must be one of"),
]


@pytest.mark.parametrize("description,kwargs,exception,words", FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_fit_rejects_bad_input_and_changes_nothing(description, kwargs, exception, words):
    model = _trained()
    before = _state(model)
    kwargs = dict(kwargs)
    if kwargs.get("optimizer") == "other":
        kwargs["optimizer"] = Adam(nx.MLP([3, 4, 3], device="cpu", seed=1).parameters())
    X, y = kwargs.pop("X", X3), kwargs.pop("y", Y3)
    kwargs = {"epochs": 2, "batch_size": 3, "verbose": 0, **kwargs}
    with pytest.raises(exception) as info:
        model.fit(X, y, **kwargs)
    assert words in str(info.value), str(info.value)
    _equal_states(before, _state(model))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0), (137, 5), (-1, -1)])
def test_the_finiteness_check_finds_every_nan_and_inf(dtype, bad, where):
    from nn_xp.validation import all_finite as _all_finite

    X = np.random.default_rng(0).normal(size=(300, 7)).astype(dtype)
    assert _all_finite(X) and _all_finite(np.asfortranarray(X))
    X[where] = bad
    assert not _all_finite(X)
    assert not _all_finite(np.asfortranarray(X))  # the blockwise path
    assert not _all_finite(X[where[0] % 300 % 2 :: 2])  # not contiguous, the bad row kept


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_the_finiteness_check_reads_a_torch_tensor_through_its_host_memory(bad):
    torch = pytest.importorskip("torch")
    from nn_xp.backends import host_view
    from nn_xp.validation import all_finite as _all_finite

    X = np.random.default_rng(0).normal(size=(300, 7)).astype(np.float32)
    tensor = torch.from_numpy(X)
    assert host_view(tensor) is not None and np.shares_memory(host_view(tensor), X)
    assert host_view(tensor.to(torch.bfloat16)) is None  # a dtype NumPy lacks: the blockwise path
    assert _all_finite(tensor) and _all_finite(tensor.to(torch.bfloat16))
    X[137, 5] = bad
    assert not _all_finite(tensor) and not _all_finite(tensor.to(torch.bfloat16))
    huge = torch.full((4, 3), 1e30)  # finite, though its sum of squares overflows
    assert _all_finite(huge)


@pytest.mark.parametrize("dtype, huge", [("float32", 1e30), ("float64", 1e200)])
def test_the_finiteness_check_accepts_values_whose_squares_overflow(dtype, huge):
    # The quick sum of squares overflows for these; the exact check must still say finite.
    from nn_xp.validation import all_finite as _all_finite

    X = np.full((50, 4), huge, dtype=dtype)
    X[3, 2] = -huge
    with np.errstate(over="raise", invalid="raise"):  # and no floating-point warning escapes
        assert _all_finite(X)


def test_absurd_but_valid_hyperparameters_are_accepted():
    """epochs=10**12 is a valid request (a callback or Ctrl-C ends it); a huge finite learning rate
    is a valid number (fit's non-finite guard undoes the divergence, tests/test_failures.py)."""
    model = _trained()
    history = model.fit(X3, Y3, epochs=10**12, batch_size=10**12, verbose=0, callbacks=[_StopAfterOneEpoch()])
    assert history.stop_reason == "stopped by a callback" and len(history) == 3
    model.fit(X3.astype(np.int64), Y3.astype(np.uint8), epochs=1, verbose=0)  # integer inputs convert
    model.fit(X3.astype(np.float16), np.eye(3)[Y3], epochs=1, verbose=0)  # as do float16 and one-hot
    assert all(np.all(np.isfinite(p)) for p in model.parameters())


PREDICT_CASES = [
    ("predict", dict(X=X3[:, :2]), ValueError, "layer_sizes[0]=3"),
    ("predict", dict(X=X3 * np.inf), ValueError, "X contains NaN or infinite"),
    ("predict", dict(X=X_BIG), ValueError, "too large for float32"),
    ("predict", dict(X=np.zeros((0, 3))), ValueError, "no samples"),
    ("predict", dict(X="abc"), TypeError, "X must be numeric"),
    ("predict", dict(X=array_api_strict.asarray(X3)), ValueError, "X is on device"),
    ("predict", dict(batch_size=0), ValueError, "batch_size"),
    ("predict", dict(batch_size=-2), ValueError, "batch_size"),
    ("predict", dict(batch_size="2"), TypeError, "batch_size"),
    ("predict", dict(batch_size=100.5), TypeError, "batch_size"),
    ("predict", dict(batch_size=True), TypeError, "batch_size"),
    ("predict_proba", dict(batch_size=0), ValueError, "batch_size"),
    ("predict_proba", dict(X=X3[None]), ValueError, "2-D"),
    ("forward", dict(X=None), TypeError, "X must be an array"),
    ("evaluate", dict(y=Y3[:5]), ValueError, "y must have 6 rows"),
    ("evaluate", dict(y=np.array(["a"] * 6)), TypeError, "y must be numeric"),
    ("evaluate", dict(y=Y3 * np.nan), ValueError, "y contains NaN"),
    ("evaluate", dict(loss="hinge"), ValueError, "loss must be one of"),
    ("evaluate", dict(X=X3[:, :1]), ValueError, "layer_sizes[0]=3"),
    ("evaluate", dict(y=array_api_strict.asarray(Y3)), ValueError, "y is on device"),
]


@pytest.mark.parametrize("method,kwargs,exception,words", PREDICT_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(PREDICT_CASES)])
def test_inference_rejects_bad_input_and_changes_nothing(method, kwargs, exception, words):
    model = _trained()
    before = _state(model)
    kwargs = dict(kwargs)
    args = [kwargs.pop("X", X3)] + ([kwargs.pop("y", Y3)] if method == "evaluate" else [])
    with pytest.raises(exception) as info:
        getattr(model, method)(*args, **kwargs)
    assert words in str(info.value), str(info.value)
    _equal_states(before, _state(model))


def test_predict_proba_needs_a_classifier():
    model = nx.MLP([3, 4, 1], device="cpu", seed=0)
    with pytest.raises(ValueError, match="predict_proba needs a classifier"):
        model.predict_proba(X3)


SAVE_LOAD_CASES = [
    ("save", None, TypeError, "path must be a file path"),
    ("save", 3.5, TypeError, "path must be a file path"),
    ("save", "", ValueError, "path must be a file path"),
    ("save", "{folder}", IsADirectoryError, "{folder}: cannot write the model file"),
    ("save", "{file}/model.npz", OSError, "{file}/model.npz: cannot write the model file there"),
    ("load", None, TypeError, "path must be a file path"),
    ("load", ["model.npz"], TypeError, "path must be a file path"),
    ("load", "", ValueError, "path must be a file path"),
    ("load", "{folder}/missing.npz", FileNotFoundError, "missing.npz: no such model file"),
    ("load", "{folder}", ValueError, "not a regular file (a folder)"),
    ("load", "{file}", ValueError, "not a readable .npz archive"),
    ("load-device", "tpu", ValueError, "device must be one of"),
    ("load-device", 0, TypeError, "device must be a string"),
]


@pytest.mark.parametrize("action,path,exception,words", SAVE_LOAD_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(SAVE_LOAD_CASES)])
def test_save_and_load_reject_bad_paths(tmp_path, action, path, exception, words):
    folder, file = tmp_path / "models", tmp_path / "notes.txt"
    folder.mkdir()
    file.write_text("not a model\n")
    fill = {"folder": str(folder), "file": str(file)}
    if isinstance(path, str):
        path = path.format(**fill)
    model = _trained()
    before = _state(model)
    listing = sorted(os.listdir(tmp_path)), sorted(os.listdir(folder))
    with pytest.raises(exception) as info:
        if action == "save":
            model.save(path)
        elif action == "load":
            nx.load(path, device="cpu")
        else:
            good = tmp_path / "good.npz"
            model.save(good)
            listing = sorted(os.listdir(tmp_path)), listing[1]
            nx.load(good, device=path)
    assert words.format(**fill) in str(info.value), str(info.value)
    _equal_states(before, _state(model))
    assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(folder))) == listing  # no file left behind
    assert file.read_text() == "not a model\n"


def test_save_refuses_metadata_it_cannot_store_and_writes_nothing(tmp_path):
    model = _trained()
    with pytest.raises(ValueError, match="preprocessing mean and std"):  # refused where it is set
        model.preprocessing = {"mean": {1, 2, 3}}
    assert model.preprocessing is None
    model.split = {"seed": {1, 2, 3}}
    with pytest.raises(TypeError, match="cannot store set"):
        model.save(tmp_path / "model.npz")
    assert os.listdir(tmp_path) == []


def _params():
    return nx.MLP([3, 4, 3], device="cpu", seed=0).parameters()


OPTIMIZER_CASES = [
    (lambda: SGD(_params(), learning_rate=-0.1), ValueError, "learning_rate"),
    (lambda: SGD(_params(), learning_rate="0.1"), TypeError, "learning_rate"),
    (lambda: SGD(_params(), learning_rate=np.inf), ValueError, "learning_rate"),
    (lambda: SGD(_params(), 0.1, momentum=-0.5), ValueError, "momentum"),
    (lambda: SGD(_params(), 0.1, dampening=2.0), ValueError, "dampening"),
    (lambda: SGD(_params(), 0.1, nesterov=1), TypeError, "nesterov"),
    (lambda: SGD(_params(), 0.1, nesterov=True), ValueError, "nesterov=True requires momentum > 0"),
    (lambda: SGD(tuple(_params()), 0.1), TypeError, "params"),
    (lambda: SGD([], 0.1), ValueError, "params"),
    (lambda: Adam(_params(), beta1=1.0), ValueError, "beta1"),
    (lambda: Adam(_params(), beta2=-0.1), ValueError, "beta2"),
    (lambda: Adam(_params(), eps=0.0), ValueError, "eps"),
    (lambda: Adam(_params(), amsgrad="yes"), TypeError, "amsgrad"),
    (lambda: AdamW(_params(), weight_decay=-1e-2), ValueError, "weight_decay"),
    (lambda: RMSprop(_params(), rho=1.0), ValueError, "rho"),
    (lambda: RMSprop(_params(), centered=None), TypeError, "centered"),
    (lambda: nx.optim.get_optimizer("adagrad", _params()), ValueError, "optimizer must be one of"),
]


@pytest.mark.parametrize("make,exception,words", OPTIMIZER_CASES, ids=[str(i) for i in range(len(OPTIMIZER_CASES))])
def test_optimizer_constructors_reject_bad_hyperparameters(make, exception, words):
    with pytest.raises(exception) as info:
        make()
    assert words in str(info.value), str(info.value)


def _grads(model):
    return [np.ones_like(p) for p in model.parameters()]


STEP_CASES = [
    ("too few", lambda m: _grads(m)[:-1], ValueError, "grads must hold one array per parameter"),
    ("a dict", lambda m: dict(enumerate(_grads(m))), TypeError, "grads must be a list"),
    ("wrong shape", lambda m: [g.T for g in _grads(m)], ValueError, "grads[0] must have its parameter's shape"),
    ("wrong dtype", lambda m: [g.astype(np.float64) for g in _grads(m)], ValueError, "grads[0] has dtype float64"),
    ("not arrays", lambda m: [1.0] * len(_grads(m)), ValueError, "grads[0] must have its parameter's shape"),
    ("another device", lambda m: [array_api_strict.asarray(g) for g in _grads(m)], ValueError,
     "grads[0] is on device 'array_api_strict'"),
    ("state of another optimizer", "load_state_dict", ValueError, "state_dict is for optimizer 'sgd'"),
    ("infinite learning rate", "learning_rate", ValueError, "learning_rate"),
]


@pytest.mark.parametrize("description,make,exception,words", STEP_CASES, ids=[c[0] for c in STEP_CASES])
def test_optimizer_calls_reject_bad_input_and_change_nothing(description, make, exception, words):
    model = _trained()
    before = _state(model)
    optimizer = model.optimizer
    with pytest.raises(exception) as info:
        if make == "load_state_dict":
            optimizer.load_state_dict(SGD(model.parameters(), 0.1).state_dict())
        elif make == "learning_rate":
            optimizer.learning_rate = float("inf")
        else:
            optimizer.step(make(model))
    assert words in str(info.value), str(info.value)
    _equal_states(before, _state(model))


SCHEDULE_CASES = [
    (lambda: StepDecay(step_size=0), ValueError, "step_size"),
    (lambda: StepDecay(step_size=2, gamma=1.5), ValueError, "gamma"),
    (lambda: ExponentialDecay(gamma="0.5"), TypeError, "gamma"),
    (lambda: ExponentialDecay(gamma=np.nan), ValueError, "gamma"),
    (lambda: CosineWithWarmup(total_epochs=0), ValueError, "total_epochs"),
    (lambda: CosineWithWarmup(total_epochs=10, warmup_epochs=-1), ValueError, "warmup_epochs"),
    (lambda: ReduceOnPlateau(factor=1.0), ValueError, "factor"),
    (lambda: ReduceOnPlateau(monitor=None), TypeError, "monitor"),
    (lambda: get_schedule("step"), TypeError, "step_size"),
    (lambda: get_schedule("cosine", total_epochs=5, bogus=1), TypeError, "bogus"),
    (lambda: StepDecay(step_size=2)(-1, 0.1), ValueError, "epoch"),
    (lambda: StepDecay(step_size=2)(0, 0.0), ValueError, "base_learning_rate"),
]


@pytest.mark.parametrize("make,exception,words", SCHEDULE_CASES, ids=[str(i) for i in range(len(SCHEDULE_CASES))])
def test_schedules_reject_bad_arguments(make, exception, words):
    with pytest.raises(exception) as info:
        make()
    assert words in str(info.value), str(info.value)


CALLBACK_CASES = [
    (lambda: EarlyStopping(patience=-1), ValueError, "patience"),
    (lambda: EarlyStopping(patience=1.5), ValueError, "patience"),
    (lambda: EarlyStopping(min_delta=-0.1), ValueError, "min_delta"),
    (lambda: EarlyStopping(monitor=""), TypeError, "monitor"),
    (lambda: ModelCheckpoint(None), TypeError, "path"),
    (lambda: ModelCheckpoint("model.npz", monitor=3), TypeError, "monitor"),
]


@pytest.mark.parametrize("make,exception,words", CALLBACK_CASES, ids=[str(i) for i in range(len(CALLBACK_CASES))])
def test_callbacks_reject_bad_arguments(make, exception, words):
    with pytest.raises(exception) as info:
        make()
    assert words in str(info.value), str(info.value)


# ---- the command line ----------------------------------------------------------------------------
CLI_CASES = [
    (["train", "--layers", "1", "0", "1"], "--layers"),
    (["train", "--epochs", "abc"], "--epochs"),
    (["train", "--epochs", "-3"], "--epochs"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--learning-rate", "nan"], "--learning-rate"),
    (["train", "--learning_rate", "1e400"], "--learning_rate"),
    (["train", "--test-size", "1.5"], "--test-size"),
    (["train", "--validation-split", "nan"], "--validation-split"),
    (["train", "--dtype", "float16"], "--dtype"),
    (["train", "--optimizer", "adagrad"], "--optimizer"),
    (["train", "--optimizer", "sgd", "--momentum", "-1"], "momentum"),
    (["train", "--momentum", "0.9"], "--momentum does not apply to the adam optimizer"),
    (["train", "--seed", "-1"], "seed"),
    (["train", "--schedule", "exponential", "--gamma", "2"], "gamma"),
    (["train", "--layers", "1", "10", "1", "--activation", "relu", "tanh"], "--activation gives 2 names"),
    (["train", "--activation", "leaky_relu", "--leaky-slope", "nan"], "negative_slope"),
    (["train", "--dataset", "nan.csv", "--target", "y"], "nan.csv"),
    (["train", "--resume", "pickle.npz"], "pickle.npz"),
    (["train", "--epochs", "1", "--save", "notes.txt/model.npz"], "notes.txt/model.npz"),
    (["predict", "good.npz", "nan.npy"], "nan.npy"),
    (["predict", "good.npz", "nan.npy", "--device", "cuda:7"], "device"),
    (["predict", "pickle.npz", "nan.npy"], "pickle.npz"),
    (["evaluate", "good.npz", "features.npz"], "no targets"),
    (["nonsense"], "COMMAND"),
]


def _cli(args, cwd):
    env = {**os.environ, "NN_XP_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "nn_xp", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


@pytest.fixture(scope="module")
def cli_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "notes.txt").write_text("a file, not a folder\n")
    (folder / "nan.csv").write_text("a,b,y\n1,2,0\n3,nan,1\n")
    np.save(folder / "nan.npy", np.array([[0.5], [np.nan]]))
    np.savez(folder / "features.npz", X=np.zeros((3, 1)))
    nx.MLP([1, 3, 1], device="cpu", seed=0).save(str(folder / "good.npz"))
    with open(folder / "pickle.npz", "wb") as handle:
        np.savez(handle, meta=np.array([object()], dtype=object))
    return folder


@pytest.mark.parametrize("args,words", CLI_CASES, ids=[" ".join(c[0])[:40] for c in CLI_CASES])
def test_cli_errors_exit_2_with_one_line_and_no_traceback(cli_folder, args, words):
    before = sorted(os.listdir(cli_folder))
    result = _cli(args, cli_folder)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("nn-xp: error: ") and words in last, result.stderr
    # Errors found after parsing print that one line alone (argparse's own errors print the usage first).
    assert sorted(os.listdir(cli_folder)) == before
