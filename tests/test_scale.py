"""Scale: training memory is the data plus O(batch_size), however many samples there are.

The big run happens in a fresh subprocess, whose peak RSS (VmHWM) is reset after the data is made
(/proc/self/clear_refs), so the peak is what fit adds. getrusage's ru_maxrss cannot be used: a child
made by fork+exec starts with its parent's, and the test session's parent can be larger than all this.
The smaller checks use tracemalloc, which NumPy reports its array allocations to.
"""

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import nn_xp as nx

MiB = 2**20

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import nn_xp as nx

    def rss_now():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/self/status")

    def rss_peak():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc/self/status")

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # resets VmHWM to the current RSS
            return True
        except OSError:
            return False

    n, d, k, batch = (int(a) for a in sys.argv[1:5])
    # Warm up first, so that code and lazily imported modules are in the baseline, not the increment.
    warm = nx.MLP([d, 64, k], output_activation="softmax", device="cpu", seed=0)
    warm.fit(np.zeros((8, d), np.float32), np.arange(8) % k, epochs=1, batch_size=4, verbose=0)
    del warm
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d), dtype=np.float32)  # drawn in float32: no float64 transient
    y = rng.integers(0, k, size=n)
    reset = reset_peak()
    baseline, baseline_peak = rss_now(), rss_peak()
    if not reset:  # no clear_refs here: count NumPy's allocations instead (they are traced)
        import tracemalloc
        tracemalloc.start()
    model = nx.MLP([d, 64, k], output_activation="softmax", device="cpu", seed=0)
    started = time.perf_counter()
    history = model.fit(X, y, epochs=1, batch_size=batch, verbose=0)
    peak = rss_peak() if reset else baseline + tracemalloc.get_traced_memory()[1]
    print(json.dumps({
        "baseline": baseline, "baseline_peak": baseline_peak, "peak": peak,
        "peak_from": "VmHWM" if reset else "tracemalloc",
        "X_bytes": X.nbytes, "y_bytes": y.nbytes, "fit_seconds": time.perf_counter() - started,
        "loss": history.history["loss"], "steps": model.optimizer.step_count,
    }))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_million_samples_train_in_the_data_plus_batch_memory():
    n, d, k, batch = 1_000_000, 100, 10, 1024
    # One BLAS thread: this checks memory, and on a small shared machine threaded BLAS on
    # 1024 x 100 blocks is slower, not faster.
    env = {**os.environ, "NN_XP_DEVICE": "cpu", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(n), str(d), str(k), str(batch)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["steps"] == -(-n // batch) and np.isfinite(report["loss"][0])

    increment = report["peak"] - report["baseline"]
    one_hot = n * k * 4  # cross_entropy's float32 one-hot targets: part of "the data"
    # Beyond the data, fit may hold: one shuffle order (int64 per sample, 2% of X here), the
    # one-hot encoding's boolean temporary (n * k bytes) and O(batch) buffers, plus allocator
    # slack. A full-size temporary of X (a copy, or a whole-array finiteness mask of X.size
    # bytes) breaks the bound: the old unchunked finiteness check measured ~95 MiB here.
    bound = one_hot + n * 8 + n * k + 16 * MiB
    numbers = {key: round(value / MiB, 1) for key, value in report.items()
               if key.endswith(("baseline", "peak", "bytes"))}
    assert increment < bound, (
        f"fit raised peak RSS by {increment / MiB:.1f} MiB over the data; allowed {bound / MiB:.1f} MiB; {numbers}"
    )
    assert increment < 0.3 * (report["X_bytes"] + one_hot)


def _traced_peak(function):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = function()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_checking_X_copies_nothing_when_it_already_fits():
    X = np.random.default_rng(0).standard_normal((200_000, 50), dtype=np.float32)  # 40 MB
    model = nx.MLP([50, 4, 1], device="cpu", seed=0)
    checked, peak = _traced_peak(lambda: model.check_input(X))
    assert checked is X or np.shares_memory(checked, X)
    assert peak < X.nbytes / 20  # the finiteness check works in blocks: no X.size-byte mask
    X[123_456, 7] = np.nan  # ...and still sees every element
    with pytest.raises(ValueError, match="NaN"):
        model.check_input(X)


def test_validation_split_does_not_copy_the_training_data():
    rng = np.random.default_rng(0)
    n, d, k = 50_000, 200, 10
    X = rng.standard_normal((n, d), dtype=np.float32)  # 40 MB
    y = rng.integers(0, k, size=n)
    model = nx.MLP([d, 16, k], output_activation="softmax", device="cpu", seed=0)
    model.fit(X[:64], y[:64], epochs=1, batch_size=32, verbose=0)  # warm-up: optimizer state exists
    history, peak = _traced_peak(
        lambda: model.fit(X, y, epochs=1, batch_size=512, validation_split=0.1, verbose=0)
    )
    assert len(history.history["val_loss"]) == 1
    # The hold-out (10% of X), the one-hot targets and O(batch) buffers; not 90% of X again.
    allowed = 0.1 * X.nbytes + n * k * 4 * 2 + 8 * MiB
    assert peak < allowed, f"{peak / MiB:.1f} MiB traced, allowed {allowed / MiB:.1f} MiB"


def test_validation_split_by_index_trains_on_the_same_rows():
    """Gathering the training rows from X by index gives the same batches as copying them out."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(90, 4)), rng.integers(0, 3, size=90)
    results = []
    for shuffle in (True, False):
        model = nx.MLP([4, 5, 3], output_activation="softmax", dtype="float64", device="cpu", seed=2)
        model.fit(X, y, epochs=2, batch_size=16, validation_split=0.2, shuffle=shuffle, verbose=0)
        # The reference: the same hold-out drawn by hand, the training rows copied out.
        reference = nx.MLP([4, 5, 3], output_activation="softmax", dtype="float64", device="cpu", seed=2)
        order = reference.rng.permutation(90)
        train = order[18:]
        reference.fit(X[train], y[train], epochs=2, batch_size=16, shuffle=shuffle, verbose=0)
        for a, b in zip(model.parameters(), reference.parameters()):
            np.testing.assert_array_equal(a, b)
        results.append(nx.to_numpy(model.parameters()[0]))
    assert not np.array_equal(*results)
