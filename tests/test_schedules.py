"""Learning-rate schedules against hand formulas and torch.optim.lr_scheduler."""

import json
import math

import pytest

from nn_xp.optim import schedules
from nn_xp.optim.schedules import CosineWithWarmup, ExponentialDecay, ReduceOnPlateau, StepDecay

EPOCHS = 30
BASE = 0.1


def values(schedule, epochs=EPOCHS, base=BASE, metrics=None):
    """The rate for each epoch, feeding the previous epoch's `metrics[e - 1]` as the logs."""
    out = []
    for epoch in range(epochs):
        logs = {} if epoch == 0 or metrics is None else metrics[epoch - 1]
        out.append(schedule(epoch, base, logs))
    return out


def torch_values(torch, make_scheduler, epochs=EPOCHS, base=BASE, metrics=None):
    """The rate torch's scheduler gives each epoch (one scheduler.step() per epoch)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = make_scheduler(optimizer)
    out = []
    for epoch in range(epochs):
        out.append(optimizer.param_groups[0]["lr"])
        if metrics is None:
            optimizer.step()
            scheduler.step()
        else:
            scheduler.step(metrics[epoch]["val_loss"])
    return out


# ---- hand formulas ----------------------------------------------------------------------------
def test_step_decay_by_hand():
    got = values(StepDecay(step_size=7, gamma=0.5))
    assert got == pytest.approx([BASE * 0.5 ** (e // 7) for e in range(EPOCHS)], rel=1e-15)
    assert got[6] == BASE and got[7] == BASE / 2 and got[29] == BASE / 16


def test_exponential_decay_by_hand():
    got = values(ExponentialDecay(gamma=0.9))
    assert got == pytest.approx([BASE * 0.9**e for e in range(EPOCHS)], rel=1e-15)


def test_cosine_with_warmup_by_hand():
    schedule = CosineWithWarmup(total_epochs=25, warmup_epochs=5, min_learning_rate=0.001)
    got = values(schedule)
    assert got[:5] == pytest.approx([BASE * k / 5 for k in range(1, 6)], rel=1e-15)  # b/W, ..., b
    assert got[5] == pytest.approx(BASE, rel=1e-15)  # the cosine starts at the base rate
    assert got[15] == pytest.approx(0.001 + (BASE - 0.001) / 2, rel=1e-15)  # half way: the mean
    expected = [0.001 + (BASE - 0.001) * (1 + math.cos(math.pi * (e - 5) / 20)) / 2 for e in range(5, 25)]
    assert got[5:25] == pytest.approx(expected, rel=1e-15)
    assert all(a > b for a, b in zip(got[5:25], got[6:25]))  # strictly decreasing
    assert got[25:] == [0.001] * 5  # past the end: the minimum


def test_plateau_reduces_after_patience():
    schedule = ReduceOnPlateau(factor=0.5, patience=2, min_delta=0.01)
    # val_loss improves twice, then stalls (a gain of 0.005 < min_delta does not count).
    losses = [1.0, 0.9, 0.895, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    got = values(schedule, epochs=10, metrics=[{"loss": 5.0, "val_loss": v} for v in losses])
    # epochs 1-3: judged 1.0 (best), 0.9 (best), 0.895 (bad 1); 4: bad 2; 5: bad 3 > patience -> halve.
    assert got[:5] == [BASE] * 5
    assert got[5] == BASE / 2
    assert got[6:8] == [BASE / 2] * 2  # the count starts again
    assert got[8] == BASE / 4
    assert schedule.best == 0.9


def test_plateau_falls_back_to_loss_and_respects_the_floor():
    schedule = ReduceOnPlateau(factor=0.1, patience=0, min_learning_rate=0.002)
    got = values(schedule, epochs=6, metrics=[{"loss": 1.0}] * 5)
    assert got == pytest.approx([BASE, BASE, BASE * 0.1, 0.002, 0.002, 0.002], rel=1e-15)
    with pytest.raises(ValueError, match="'val_loss'.*'loss'"):
        ReduceOnPlateau()(1, BASE, {"accuracy": 0.5})


def test_plateau_state_dict_round_trip():
    metrics = [{"val_loss": 1.0 / (1 + e % 4)} for e in range(EPOCHS)]
    full = values(ReduceOnPlateau(patience=1, factor=0.5), metrics=metrics)
    first = ReduceOnPlateau(patience=1, factor=0.5)
    head = [first(e, BASE, {} if e == 0 else metrics[e - 1]) for e in range(12)]
    saved = json.loads(json.dumps(first.state_dict()))  # plain JSON values
    second = ReduceOnPlateau(patience=1, factor=0.5)
    second.load_state_dict(saved)
    tail = [second(e, BASE, metrics[e - 1]) for e in range(12, EPOCHS)]
    assert head + tail == full
    assert min(full) < BASE  # it did reduce
    with pytest.raises(ValueError, match="'step'.*'plateau'"):
        second.load_state_dict(StepDecay(3).state_dict())


def test_stateless_schedules_ignore_logs_and_round_trip():
    schedule = StepDecay(step_size=3, gamma=0.5)
    assert schedule(4, BASE, {"loss": 1.0}) == schedule(4, BASE, {}) == BASE / 2
    state = schedule.state_dict()
    assert state == {"name": "step", "config": {"step_size": 3, "gamma": 0.5}, "state": {}}
    schedule.load_state_dict(state)
    assert repr(schedule) == "StepDecay(step_size=3, gamma=0.5)"


# ---- torch.optim.lr_scheduler ------------------------------------------------------------------
def test_matches_torch_step_and_exponential():
    torch = pytest.importorskip("torch")
    steps = torch.optim.lr_scheduler
    assert values(StepDecay(7, 0.5)) == pytest.approx(
        torch_values(torch, lambda o: steps.StepLR(o, step_size=7, gamma=0.5)), rel=1e-12
    )
    assert values(ExponentialDecay(0.9)) == pytest.approx(
        torch_values(torch, lambda o: steps.ExponentialLR(o, gamma=0.9)), rel=1e-12
    )


def test_matches_torch_cosine():
    torch = pytest.importorskip("torch")
    lr_scheduler = torch.optim.lr_scheduler
    ours = values(CosineWithWarmup(total_epochs=EPOCHS, min_learning_rate=0.01))
    theirs = torch_values(torch, lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=EPOCHS, eta_min=0.01))
    assert ours == pytest.approx(theirs, rel=1e-12)
    warm = values(CosineWithWarmup(total_epochs=EPOCHS, warmup_epochs=5, min_learning_rate=0.01))
    theirs = torch_values(
        torch,
        lambda o: lr_scheduler.SequentialLR(
            o,
            [
                lr_scheduler.LinearLR(o, start_factor=1 / 5, end_factor=1.0, total_iters=4),
                lr_scheduler.CosineAnnealingLR(o, T_max=EPOCHS - 5, eta_min=0.01),
            ],
            milestones=[5],
        ),
    )
    assert warm == pytest.approx(theirs, rel=1e-12)


def test_matches_torch_plateau():
    torch = pytest.importorskip("torch")
    # Improves, stalls, wobbles by less than min_delta, improves again, stalls.
    series = [1.0, 0.8, 0.7, 0.7, 0.7, 0.69995, 0.7, 0.7, 0.5, 0.5] + [0.5 - 0.00005 * k for k in range(20)]
    metrics = [{"loss": 9.0, "val_loss": v} for v in series]
    schedule = ReduceOnPlateau(factor=0.5, patience=2, min_delta=1e-4, min_learning_rate=0.03)
    ours = values(schedule, metrics=metrics)
    theirs = torch_values(
        torch,
        lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(
            o, mode="min", factor=0.5, patience=2, threshold=1e-4, threshold_mode="abs", min_lr=0.03
        ),
        metrics=metrics,
    )
    assert ours == pytest.approx(theirs, rel=1e-15)
    assert len(set(ours)) >= 3  # several reductions happened, down to the floor
    assert min(ours) == 0.03


# ---- by name and argument checks ---------------------------------------------------------------
def test_get_schedule():
    assert schedules.SCHEDULES == ("step", "exponential", "cosine", "plateau")
    assert schedules.get_schedule(None) is None
    instance = ExponentialDecay(0.5)
    assert schedules.get_schedule(instance) is instance
    assert isinstance(schedules.get_schedule("step", step_size=3), StepDecay)
    assert isinstance(schedules.get_schedule("exponential", gamma=0.9), ExponentialDecay)
    cosine = schedules.get_schedule("cosine", total_epochs=10, warmup_epochs=2)
    assert isinstance(cosine, CosineWithWarmup) and cosine.warmup_epochs == 2
    plateau = schedules.get_schedule("plateau", patience=3)
    assert isinstance(plateau, ReduceOnPlateau) and plateau.patience == 3 and plateau.monitor == "val_loss"
    with pytest.raises(ValueError, match=r"\['step', 'exponential', 'cosine', 'plateau'\].*'linear'"):
        schedules.get_schedule("linear")
    with pytest.raises(TypeError, match="schedule must be one of"):
        schedules.get_schedule(0.5)
    with pytest.raises(ValueError, match="need a schedule name"):
        schedules.get_schedule(instance, gamma=0.1)


BAD_ARGUMENTS = [
    (StepDecay, dict(step_size=0), ValueError, "step_size must be an integer >= 1"),
    (StepDecay, dict(step_size=2.5), TypeError, "step_size must be an integer"),
    (StepDecay, dict(step_size=3, gamma=0.0), ValueError, r"gamma must be a finite number in \(0.0, 1.0\]"),
    (StepDecay, dict(step_size=3, gamma=1.5), ValueError, "gamma"),
    (ExponentialDecay, dict(gamma=float("nan")), ValueError, "gamma"),
    (ExponentialDecay, dict(gamma="0.9"), TypeError, "gamma"),
    (CosineWithWarmup, dict(total_epochs=0), ValueError, "total_epochs must be an integer >= 1"),
    (CosineWithWarmup, dict(total_epochs=9, warmup_epochs=9), ValueError, "warmup_epochs must be less than"),
    (CosineWithWarmup, dict(total_epochs=9, warmup_epochs=-1), ValueError, "warmup_epochs must be an int"),
    (CosineWithWarmup, dict(total_epochs=10, min_learning_rate=-1e-3), ValueError, "min_learning_rate"),
    (ReduceOnPlateau, dict(factor=1.0), ValueError, r"factor must be a finite number in \(0.0, 1.0\)"),
    (ReduceOnPlateau, dict(patience=-1), ValueError, "patience must be an integer >= 0"),
    (ReduceOnPlateau, dict(patience=True), TypeError, "patience"),
    (ReduceOnPlateau, dict(min_delta=-0.1), ValueError, "min_delta must be a finite number >= 0"),
    (ReduceOnPlateau, dict(monitor=""), TypeError, "monitor"),
]


@pytest.mark.parametrize(
    "cls, kwargs, error, message",
    BAD_ARGUMENTS,
    ids=[f"{c.name}-{'-'.join(k)}" for c, k, _, _ in BAD_ARGUMENTS],
)
def test_bad_arguments(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(**kwargs)


def test_bad_call_arguments():
    schedule = StepDecay(3)
    with pytest.raises(ValueError, match="epoch must be an integer >= 0"):
        schedule(-1, BASE, {})
    with pytest.raises(ValueError, match="base_learning_rate must be a finite number > 0"):
        schedule(0, 0.0, {})
    with pytest.raises(TypeError, match="logs must be a dict"):
        schedule(0, BASE, [1.0])
    with pytest.raises(ValueError, match="min_learning_rate=0.5 is above the base learning rate"):
        CosineWithWarmup(10, min_learning_rate=0.5)(0, BASE, {})
