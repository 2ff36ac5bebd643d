"""Bad input raises ValueError/TypeError naming the parameter, before any work, and changes nothing."""

import numpy as np
import pytest

import nn_xp as nx

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
    (dict(layer_sizes=[3, 4, 1], activation={"name": "leaky_relu", "negative_slope": -1}), ValueError, "negative_slope"),
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
