"""The strong-Wolfe line search of L-BFGS, as `torch.optim.lbfgs._strong_wolfe` runs it, step for step.

Both functions are transcriptions of torch's (themselves ports of the Lua `optim` package's
`polyinterp.lua` and `lswolfe.lua`), with the same branches in the same order, so that nn_xp's
L-BFGS takes torch's steps. Step lengths, losses and directional derivatives are Python floats;
gradients and directions are flat arrays of any Array API namespace.

A point t along the direction d satisfies the strong Wolfe conditions when

    f(x + t d) <= f(x) + c1 t g.d          (sufficient decrease, Armijo)
    |g(x + t d).d| <= c2 |g.d|             (curvature)

The search first brackets an interval holding such a point (growing t by cubic extrapolation), then
shrinks the bracket by cubic interpolation ("zoom") until a point satisfies both.
"""

from __future__ import annotations

import math


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None) -> float:
    """The minimiser of the cubic through (x1, f1, slope g1) and (x2, f2, slope g2), kept in `bounds`
    (default: between x1 and x2); the middle of the bounds where the cubic has no minimum.

        d1 = g1 + g2 - 3 (f1 - f2) / (x1 - x2),   d2 = sqrt(d1^2 - g1 g2)
        t  = x2 - (x2 - x1) (g2 + d2 - d1) / (g2 - g1 + 2 d2)      (x1 <= x2; mirrored otherwise)
    """
    if bounds is not None:
        low, high = bounds
    else:
        low, high = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            minimum = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            minimum = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(minimum, low), high)
    return (low + high) / 2.0


def strong_wolfe(evaluate, dot, t, d, f, g, gtd, d_norm, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """A step length t along d satisfying the strong Wolfe conditions (or the best point found).

    Args:
        evaluate: t -> (loss as a float, flat gradient at x + t d); x is fixed by the caller.
        dot: (a, b) -> a.b as a float, for flat arrays.
        t: the first trial step. d: the search direction (flat). f, g: loss and gradient at x.
        gtd: g.d (< 0: a descent direction). d_norm: max |d_i|.
        max_ls: the most evaluations this search makes after its first (torch's max_ls).
    Returns:
        (loss, flat gradient, t, number of evaluations), the loss and gradient at x + t d.
    """
    f_new, g_new = evaluate(t)
    evaluations = 1
    gtd_new = dot(g_new, d)

    # Bracket an interval holding a point that satisfies the conditions.
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f, bracket_g = [t_prev, t], [f_prev, f_new], [g_prev, g_new]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f, bracket_g = [t_prev, t], [f_prev, f_new], [g_prev, g_new]
            bracket_gtd = [gtd_prev, gtd_new]
            break
        # Extrapolate: a cubic step between 1.01 t and 10 t.
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        previous = t
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = previous, f_new, g_new, gtd_new
        f_new, g_new = evaluate(t)
        evaluations += 1
        gtd_new = dot(g_new, d)
        ls_iter += 1

    if ls_iter == max_ls:  # out of evaluations: bracket from 0 (torch leaves bracket_gtd as it was)
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # Zoom: shrink the bracket until a point satisfies the conditions.
    insufficient_progress = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        # A trial too close to an end of the bracket twice running (or outside it) is moved to
        # 10% of the bracket's length from the nearer end.
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insufficient_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False

        f_new, g_new = evaluate(t)
        evaluations += 1
        gtd_new = dot(g_new, d)
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low]:
            # No sufficient decrease, or not below the lowest point: t becomes the high end.
            bracket[high], bracket_f[high], bracket_g[high], bracket_gtd[high] = t, f_new, g_new, gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                # The old high end becomes the new low one.
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low], bracket_g[low], bracket_gtd[low] = t, f_new, g_new, gtd_new

    return bracket_f[low], bracket_g[low], bracket[low], evaluations
