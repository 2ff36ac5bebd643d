"""Mixed precision: float32 master weights, half-precision matrix products, dynamic loss scaling.

`fit(..., precision="mixed_float16" | "mixed_bfloat16")` (Keras' names) trains a float32 model so:
- the parameters and the optimizer state stay float32, in their flat buffers;
- once per step the flat parameter buffer is cast into a half-precision copy, whose views the
  layers compute with: the matrix products and activations run in float16 or bfloat16, while
  BatchNorm and LayerNorm take their statistics, normalise and reduce their gradients in float32
  (the running statistics are float32 buffers), as torch.autocast runs its norms in float32;
- the logits are cast back to float32: the softmax, the loss and its gradient, the reductions of
  the metrics and the optimizer's update are float32;
- the gradients are written into a flat half-precision buffer, then unscaled and cast into the
  float32 gradient buffer in one pass.
float16 has a narrow exponent, so its gradients are scaled up before the backward pass and down
after it (dynamic loss scaling, `LossScaler`, with PyTorch's GradScaler defaults): a step whose
gradients overflow is skipped and the scale halved; after `growth_interval` good steps it doubles.
bfloat16 has float32's exponent and needs no scaling.

On a GPU (CuPy) this is what makes the tensor cores do the products. On NumPy it is an emulation,
for tests: NumPy has float16 (slow, no BLAS), and bfloat16 through the `ml_dtypes` package.
"""

from __future__ import annotations

import math

from .. import backends
from ..validation import Integer, Options, Real

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def check_precision(precision, model) -> str | None:
    """None for plain training, else the half dtype's name ("float16" or "bfloat16")."""
    precision = Options(*PRECISIONS)(precision, "precision")
    if precision == "float32":
        return None
    if model.dtype != "float32":
        raise ValueError(f"precision={precision!r} keeps float32 master weights: the model must be float32, "
                         f"not {model.dtype}")
    if not backends.has_half_precision(model.device):
        raise ValueError(f"precision={precision!r} needs NumPy or CuPy arrays ('cpu' or 'cuda'; it writes half "
                         f"copies in place, and the Array API standard has no half-precision type); the model is "
                         f"on {model.device!r}, where precision='float32' works")
    half = precision.split("_")[1]
    compute_dtype(model.device, half)  # a clear error now, before any work, where the type is missing
    return half


def compute_dtype(device: str, half: str):
    """The array dtype for `half` on `device`'s backend."""
    return backends.half_dtype(device, half)


class LossScaler:
    """Dynamic loss scaling with torch.cuda.amp.GradScaler's defaults and rule.

    The loss (and so every gradient) is multiplied by `scale` before the backward pass; `update`
    is told whether the unscaled gradients came out finite: if not, the step is skipped and the
    scale multiplied by `backoff_factor`; after `growth_interval` finite steps in a row it is
    multiplied by `growth_factor`.
    """

    def __init__(self, init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000):
        self.scale = Real(0.0, None, closed="neither")(init_scale, "init_scale")
        self.growth_factor = Real(1.0, None, closed="neither")(growth_factor, "growth_factor")
        self.backoff_factor = Real(0.0, 1.0, closed="neither")(backoff_factor, "backoff_factor")
        self.growth_interval = Integer(1)(growth_interval, "growth_interval")
        self.good_steps = 0
        self.skipped = 0

    def update(self, finite: bool) -> bool:
        """Record one step's outcome; True when the optimizer may take it."""
        if not finite:
            self.scale *= self.backoff_factor
            self.good_steps = 0
            self.skipped += 1
            return False
        self.good_steps += 1
        if self.good_steps == self.growth_interval:
            self.scale *= self.growth_factor
            self.good_steps = 0
        return True

    def state_dict(self) -> dict:
        return {"scale": self.scale, "growth_factor": self.growth_factor, "backoff_factor": self.backoff_factor,
                "growth_interval": self.growth_interval, "good_steps": self.good_steps, "skipped": self.skipped}

    @classmethod
    def from_state_dict(cls, state: dict) -> LossScaler:
        scaler = cls(state["scale"], state["growth_factor"], state["backoff_factor"], state["growth_interval"])
        scaler.good_steps = Integer(0)(state["good_steps"], "good_steps")
        scaler.skipped = Integer(0)(state.get("skipped", 0), "skipped")
        if not math.isfinite(scaler.scale):
            raise ValueError("the loss scale must be finite")
        return scaler
