"""The strong-Wolfe line search of L-BFGS: the conditions it promises, and torch's own steps."""

import math

import numpy as np
import pytest

from nn_xp.optim.line_search import cubic_interpolate, strong_wolfe


def test_cubic_interpolate_finds_a_cubics_minimum():
    # f(x) = x^3 - 3x has its local minimum at x = 1: from (0, f, f') and (2, f, f') it is exact.
    def f(x):
        return x**3 - 3 * x

    def df(x):
        return 3 * x**2 - 3

    assert cubic_interpolate(0.0, f(0.0), df(0.0), 2.0, f(2.0), df(2.0)) == pytest.approx(1.0, abs=1e-14)
    assert cubic_interpolate(2.0, f(2.0), df(2.0), 0.0, f(0.0), df(0.0)) == pytest.approx(1.0, abs=1e-14)
    # Kept in the bounds; the middle of them where the cubic has no minimum (d1^2 < g1 g2).
    assert cubic_interpolate(0.0, f(0.0), df(0.0), 2.0, f(2.0), df(2.0), bounds=(1.5, 3.0)) == 1.5
    assert cubic_interpolate(0.0, 0.0, 1.0, 1.0, 2 / 3, 1.0, bounds=(2.0, 4.0)) == 3.0


def _quartic(x0, d):
    """phi(t) = f(x0 + t d) for f(x) = sum(x^4 / 4 - x^2 + 0.3 x): value and gradient at x0 + t d."""

    def evaluate(t):
        x = x0 + t * d
        return float(np.sum(x**4 / 4 - x**2 + 0.3 * x)), x**3 - 2 * x + 0.3

    return evaluate


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("t0", [1e-3, 1.0, 30.0])
def test_the_step_satisfies_the_strong_wolfe_conditions(seed, t0):
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(5) * 2
    f0, g0 = float(np.sum(x0**4 / 4 - x0**2 + 0.3 * x0)), x0**3 - 2 * x0 + 0.3
    d = -g0
    evaluate = _quartic(x0, d)
    gtd = float(g0 @ d)
    f, g, t, evaluations = strong_wolfe(evaluate, lambda a, b: float(a @ b), t0, d, f0, g0, gtd,
                                        float(np.max(np.abs(d))), max_ls=50)
    f_t, g_t = evaluate(t)
    assert f == f_t and np.array_equal(g, g_t)  # what it returns is the point it names
    assert f <= f0 + 1e-4 * t * gtd  # sufficient decrease
    assert abs(float(g @ d)) <= 0.9 * abs(gtd)  # curvature
    assert 1 <= evaluations <= 50


def test_a_search_out_of_evaluations_returns_the_best_bracket_end():
    x0 = np.array([3.0, -2.5])
    f0, g0 = float(np.sum(x0**4 / 4 - x0**2 + 0.3 * x0)), x0**3 - 2 * x0 + 0.3
    d = -g0
    f, _, t, evaluations = strong_wolfe(_quartic(x0, d), lambda a, b: float(a @ b), 100.0, d, f0, g0,
                                        float(g0 @ d), float(np.max(np.abs(d))), max_ls=1)
    assert evaluations == 2  # the first trial, then max_ls=1 more (torch counts so too)
    assert f <= f0 and math.isfinite(t)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("t0", [1e-3, 1.0, 30.0])
def test_matches_torchs_strong_wolfe(seed, t0):
    torch = pytest.importorskip("torch")
    from torch.optim.lbfgs import _strong_wolfe

    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(5) * 2
    f0, g0 = float(np.sum(x0**4 / 4 - x0**2 + 0.3 * x0)), x0**3 - 2 * x0 + 0.3
    d = -g0
    ours = strong_wolfe(_quartic(x0, d), lambda a, b: float(a @ b), t0, d, f0, g0, float(g0 @ d),
                        float(np.max(np.abs(d))), max_ls=25)

    def obj_func(x, t, direction):
        f, g = _quartic(x0, d)(float(t))
        return f, torch.tensor(g)

    theirs = _strong_wolfe(obj_func, torch.tensor(x0), t0, torch.tensor(d), f0, torch.tensor(g0),
                           torch.tensor(g0) @ torch.tensor(d))
    assert ours[3] == theirs[3]  # the same number of evaluations
    assert abs(float(ours[2]) - float(theirs[2])) < 1e-12
    assert abs(ours[0] - float(theirs[0])) < 1e-12
    np.testing.assert_allclose(ours[1], theirs[1].numpy(), rtol=0, atol=1e-12)
