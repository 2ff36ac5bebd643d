"""The record of training: one value per epoch for every figure, over all `fit` calls of a model."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class History:
    """Per-epoch records of every `fit` call on a model (a second `fit` appends).

    history: {"loss": [...], "val_loss": [...], "accuracy": [...], "learning_rate": [...],
              "epoch_time": [...], ...}, one value per epoch.
    epoch: the epoch numbers, counted over all fit calls.
    stop_reason: None, or why the last fit ended early ("early_stopping", "interrupted",
                 "non-finite loss").
    """

    history: dict = field(default_factory=dict)
    epoch: list = field(default_factory=list)
    stop_reason: str | None = None

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __len__(self) -> int:
        return len(self.epoch)

    def state_dict(self) -> dict:
        """JSON-ready: {"history": {name: [floats]}, "epoch": [ints], "stop_reason"}."""
        return {
            "history": {str(k): list(values) for k, values in self.history.items()},
            "epoch": [int(e) for e in self.epoch],
            "stop_reason": self.stop_reason,
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> History:
        return cls(history={k: list(v) for k, v in state["history"].items()}, epoch=list(state["epoch"]),
                   stop_reason=state.get("stop_reason"))


def log_order(keys) -> list:
    """Training figures in reading order: loss, the metrics, their validation twins, then the
    learning rate and the epoch time (a loaded model's history comes back in alphabetical order)."""
    def rank(key):
        base = key[4:] if key.startswith("val_") else key
        tail = ("learning_rate", "epoch_time")
        return (key in tail, tail.index(key) if key in tail else 0, key.startswith("val_"), base != "loss")

    return sorted(keys, key=rank)
