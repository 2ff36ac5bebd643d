"""The training loop behind `MLP.fit`: mini-batch gradient descent with any optimizer.

Batch, mini-batch and stochastic gradient descent are all `batch_size` choices of this one loop
(`batch_size=None` or n_samples: batch; 1: stochastic). The data goes to the model's device once;
each epoch draws one shuffle order from the model's host generator, and each batch is gathered on
the device by those indices. The loss stays on the device and reaches the host once per epoch.

The package: loop.py (`fit` and the loop over epochs), epoch.py (one epoch of batches),
guards.py (interrupts, rollback, non-finite losses), checks.py (fit's argument checks),
metrics.py (the named validation metrics).
"""

from __future__ import annotations

from .checks import check_full_batch, class_weights
from .epoch import Epoch, FullBatchEpoch, l2_penalty
from .guards import Interrupt, NonFiniteLossWarning
from .loop import fit

__all__ = ["Epoch", "FullBatchEpoch", "Interrupt", "NonFiniteLossWarning", "check_full_batch", "class_weights",
           "fit", "l2_penalty"]
