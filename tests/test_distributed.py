"""Data-parallel training (distributed.py): mpiexec -n 2 and -n 3 inside the suite, against one
process training with the same global batch. Skipped, with the reason, where the 'mpi' extra
(mpi4py with MPICH) is not installed; `make test` installs it."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nn_xp as nx

from .distributed_worker import data, fit_kwargs, model_for

HERE = Path(__file__).resolve().parent
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
HAVE_MPI = MPIEXEC is not None and importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="needs the 'mpi' extra: pip install 'nn_xp[mpi]' "
                               "(mpi4py with MPICH, which brings mpiexec)")
SPEC = dict(n=102, layers=[5, 12, 8, 3], dtype="float64", seed=4, data_seed=1, epochs=3, batch_size=16,
            dropout=0.3, l2=0.01, validation_split=0.2)


def _env():
    env = {**os.environ, "NN_XP_DEVICE": "cpu", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    return {k: v for k, v in env.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL"))}


def launch(n_ranks, spec, tmp_path, timeout=120, args=None):
    """mpiexec -n N on the worker (or on `args`); returns (the completed process, the output folder)."""
    out = tmp_path / f"out{n_ranks}"
    out.mkdir(exist_ok=True)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    command = args or [sys.executable, str(HERE / "distributed_worker.py"), str(spec_path), str(out)]
    result = subprocess.run([MPIEXEC, "-n", str(n_ranks), *command], capture_output=True, text=True,
                            env=_env(), timeout=timeout, cwd=tmp_path)
    return result, out


def _one_process(spec):
    X, y = data(spec)
    model = model_for(spec)
    history = model.fit(X, y, **fit_kwargs(spec))
    return [np.asarray(p) for p in model.parameters() + model.buffers()], history.history


def _ranks(out, n_ranks):
    results = []
    for rank in range(n_ranks):
        with np.load(out / f"rank{rank}.npz") as archive:
            params = [archive[f"arr_{i}"] for i in range(len(archive.files) - 4)]
            results.append((params, json.loads(bytes(archive["history"]).decode()), int(archive["size"])))
    return results


def _largest_difference(a, b) -> float:
    return max(float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-300)) for x, y in zip(a, b))


@needs_mpi
@pytest.mark.parametrize("n_ranks", [2, 3])
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-12), ("float32", 1e-5)])
def test_ranks_train_as_one_process_with_the_global_batch(n_ranks, dtype, tolerance, tmp_path):
    """Dropout, L2, a validation split, and with 3 ranks uneven parts and a last batch of 2 rows
    (one rank with none): every rank ends bitwise equal, and equal to one process to rounding."""
    spec = dict(SPEC, dtype=dtype)
    result, out = launch(n_ranks, spec, tmp_path)
    assert result.returncode == 0, result.stderr
    ranks = _ranks(out, n_ranks)
    assert [size for _, _, size in ranks] == [n_ranks] * n_ranks
    for params, history, _ in ranks[1:]:  # bitwise identical on every rank
        for a, b in zip(params, ranks[0][0]):
            np.testing.assert_array_equal(a, b)
        same = {k: v for k, v in history.items() if k != "epoch_time"}
        assert same == {k: v for k, v in ranks[0][1].items() if k != "epoch_time"}
    reference, history = _one_process(spec)
    difference = _largest_difference(ranks[0][0], reference)
    print(f"{n_ranks} ranks, {dtype}: largest relative parameter difference from one process {difference:.2e}")
    assert difference <= tolerance
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(ranks[0][1][key], history[key], rtol=tolerance * 10)


@needs_mpi
@pytest.mark.parametrize("norm, n_ranks, weighted", [("batch", 2, False), ("batch", 3, True), ("layer", 2, False)])
def test_norm_layers_train_as_one_process_with_the_global_batch_statistics(norm, n_ranks, weighted, tmp_path):
    """BatchNorm takes the global batch's statistics (SyncBatchNorm's rule: one allreduce of the
    per-rank sums), so the parameters and the running statistics equal one process's to rounding;
    with 3 ranks the parts are uneven (16 rows: 5, 5, 6) and with sample weights they weigh apart."""
    # 80 training rows: 5 batches of 16. SGD: the biases before a BatchNorm have a gradient of 0 up
    # to rounding, which Adam would scale up to steps of 1e-11 that the running means take in.
    spec = dict(SPEC, norm=norm, n=100, validation_split=0.2, weighted=weighted, optimizer="sgd")
    result, out = launch(n_ranks, spec, tmp_path)
    assert result.returncode == 0, result.stderr
    ranks = _ranks(out, n_ranks)
    reference, history = _one_process(spec)
    assert len(ranks[0][0]) == len(reference) == {"batch": 14, "layer": 10}[norm]
    for params, _, _ in ranks[1:]:
        for a, b in zip(params, ranks[0][0]):
            np.testing.assert_array_equal(a, b)
    if norm == "batch":
        # The biases of the Dense layers before a BatchNorm have no effect (the batch mean takes
        # them out): they hold rounding only, which has no relative precision.
        noise = {1, 5}  # dense_1.b, dense_2.b
        ranks[0] = ([p for i, p in enumerate(ranks[0][0]) if i not in noise], *ranks[0][1:])
        reference = [p for i, p in enumerate(reference) if i not in noise]
    difference = _largest_difference(ranks[0][0], reference)
    print(f"norm={norm}, {n_ranks} ranks: largest relative difference from one process {difference:.2e}")
    assert difference <= 1e-12
    np.testing.assert_allclose(ranks[0][1]["val_loss"], history["val_loss"], rtol=1e-12)


@needs_mpi
def test_batch_norm_refuses_a_last_batch_that_leaves_a_rank_without_rows(tmp_path):
    spec = dict(SPEC, norm="batch", n=82, validation_split=0.0)  # 82 = 5 * 16 + 2: the last batch has 2 rows
    result, out = launch(3, spec, tmp_path)
    assert result.returncode != 0
    messages = {(out / f"rank{r}.error").read_text() for r in range(3)}
    assert len(messages) == 1
    assert "needs every global batch to give each of the 3 ranks a row" in messages.pop()


@needs_mpi
def test_sample_weights_are_shared_out_by_weight(tmp_path):
    spec = dict(SPEC, weighted=True)
    result, out = launch(3, spec, tmp_path)
    assert result.returncode == 0, result.stderr
    reference, history = _one_process(spec)
    ranks = _ranks(out, 3)
    assert _largest_difference(ranks[0][0], reference) <= 1e-12
    np.testing.assert_allclose(ranks[0][1]["val_loss"], history["val_loss"], rtol=1e-12)


@needs_mpi
def test_ranks_streaming_their_parts_from_host_memory_train_as_with_x_on_the_device(tmp_path):
    """3 ranks, uneven parts and a last batch of 2 rows (one rank's part empty), batches gathered on
    the host (streaming.py): bitwise the run without streaming."""
    runs = []
    for streaming in (False, True):
        folder = tmp_path / f"streaming-{streaming}"
        folder.mkdir()
        result, out = launch(3, dict(SPEC, streaming=streaming), folder)
        assert result.returncode == 0, result.stderr
        runs.append(_ranks(out, 3)[0])
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    assert {k: v for k, v in runs[0][1].items() if k != "epoch_time"} == {
        k: v for k, v in runs[1][1].items() if k != "epoch_time"}


@needs_mpi
def test_a_memmap_of_one_npy_file_trains_the_same(tmp_path):
    spec = dict(SPEC, dropout=0.0, validation_split=0.0)
    X, _ = data(spec)
    np.save(tmp_path / "X.npy", X)
    result, out = launch(2, dict(spec, memmap=str(tmp_path / "X.npy")), tmp_path)
    assert result.returncode == 0, result.stderr
    reference, _ = _one_process(spec)
    assert _largest_difference(_ranks(out, 2)[0][0], reference) <= 1e-12


@needs_mpi
def test_ranks_given_different_data_all_stop_with_the_same_error(tmp_path):
    result, out = launch(2, dict(SPEC, perturb_rank=1), tmp_path, timeout=60)
    assert result.returncode != 0
    messages = [(out / f"rank{rank}.error").read_text() for rank in range(2)]
    assert messages[0] == messages[1] and "the ranks were given different X and y: rank 1 has" in messages[0]


@needs_mpi
def test_a_batch_smaller_than_the_ranks_is_refused_on_every_rank(tmp_path):
    result, out = launch(3, dict(SPEC, batch_size=2), tmp_path, timeout=60)
    assert result.returncode != 0
    for rank in range(3):
        assert "batch_size=2 is smaller than the number of ranks (3)" in (out / f"rank{rank}.error").read_text()


@needs_mpi
def test_a_failure_on_one_rank_stops_every_rank_with_its_message(tmp_path):
    result, out = launch(2, dict(SPEC, fail_rank=1), tmp_path, timeout=60)
    assert result.returncode != 0
    assert "rank 1 of 2 failed: RuntimeError: boom" in result.stderr
    assert not list(out.glob("rank*.npz"))


@needs_mpi
def test_ctrl_c_stops_every_rank_at_the_same_step(tmp_path):
    import signal
    import time

    started = tmp_path / "started"
    spec = dict(SPEC, epochs=100_000, started_file=str(started))
    out = tmp_path / "out2"
    out.mkdir()
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    process = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, str(HERE / "distributed_worker.py"),
                                str(tmp_path / "spec.json"), str(out)], env=_env(), cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180  # a loaded machine starts two ranks slowly
        while not started.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert started.exists(), process.communicate(timeout=10)
        process.send_signal(signal.SIGINT)  # as a terminal's Ctrl-C reaches mpiexec
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    steps = []
    for rank in range(2):
        with np.load(out / f"rank{rank}.npz") as archive:
            assert str(archive["stop_reason"]) == "interrupted"
            steps.append(int(archive["step_count"]))
    assert steps[0] == steps[1] > 0


@needs_mpi
@pytest.mark.parametrize("batch", [2, 5])  # 5: the epoch's last batch (102 rows, 82 to train on, 16 a batch)
def test_a_ctrl_c_on_one_rank_between_agreement_and_check_stops_both_at_the_next_step(batch, tmp_path):
    spec = dict(SPEC, epochs=3, ctrl_c_rank=1, ctrl_c_batch=batch)
    result, out = launch(2, spec, tmp_path, timeout=60)  # ranks that disagree would wait for ever
    assert result.returncode == 0, result.stderr
    with np.load(out / "rank0.npz") as first, np.load(out / "rank1.npz") as second:
        assert str(first["stop_reason"]) == str(second["stop_reason"]) == "interrupted"
        assert int(first["step_count"]) == int(second["step_count"]) == min(batch + 2, 6)


@needs_mpi
def test_the_command_line_trains_on_two_ranks_and_only_rank_0_writes(tmp_path):
    common = ["train", "--dataset", "moons", "--dtype", "float64", "--epochs", "3", "--batch-size", "20",
              "--seed", "2", "--dropout", "0.2"]
    result, _ = launch(2, {}, tmp_path, args=[sys.executable, "-m", "nn_xp", *common, "--distributed",
                                              "--save", "two.npz"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("model written to two.npz") == 1 and result.stdout.count("device cpu") == 1
    single = subprocess.run([sys.executable, "-m", "nn_xp", *common, "--save", "one.npz"], capture_output=True,
                            text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert single.returncode == 0, single.stderr
    two, one = nx.load(tmp_path / "two.npz", device="cpu"), nx.load(tmp_path / "one.npz", device="cpu")
    assert _largest_difference([np.asarray(p) for p in two.parameters()],
                               [np.asarray(p) for p in one.parameters()]) <= 1e-12


# ---- without mpiexec -------------------------------------------------------------------------------
def test_outside_mpiexec_the_communicator_is_one_process_and_changes_nothing(monkeypatch):
    for name in ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(name, raising=False)
    comm = nx.distributed.init()
    assert (comm.rank, comm.size, comm.name) == (0, 1, "single")
    spec = dict(SPEC, epochs=2)
    X, y = data(spec)
    plain, together = model_for(spec), model_for(spec)
    plain.fit(X, y, **fit_kwargs(spec))
    together.fit(X, y, **fit_kwargs(spec), distributed=True)
    for a, b in zip(plain.parameters(), together.parameters()):
        np.testing.assert_array_equal(a, b)


def test_missing_mpi_names_the_extra_and_bad_arguments_are_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(RuntimeError, match=r"pip install 'nn_xp\[mpi\]'"):
        nx.distributed.init("mpi")
    assert not nx.distributed.mpi_status()[0]
    with pytest.raises(ValueError, match=r"backend must be one of \['auto', 'mpi', 'nccl', 'single'\]"):
        nx.distributed.init("gloo")
    model = nx.MLP([3, 2], output_activation="softmax")
    with pytest.raises(TypeError, match="distributed must be None, True or a communicator"):
        model.fit(np.zeros((4, 3)), [0, 1, 0, 1], distributed="mpi", verbose=0)


def test_distributed_on_the_command_line_without_mpi_names_the_extra(monkeypatch, capsys):
    from nn_xp.cli import main

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    assert main(["train", "--distributed", "--epochs", "1", "--quiet"]) == 2
    message = capsys.readouterr().err
    assert "--distributed needs MPI: the 'mpi' extra is not installed: pip install 'nn_xp[mpi]'" in message


def test_differing_settings_are_named_with_both_values_and_only_rank_0_speaks():
    class Gathered(nx.distributed.Communicator):  # two ranks, as seen from `rank`
        def __init__(self, rank, other):
            self.rank, self.size, self.other = rank, 2, other

        def allgather_object(self, value):
            return [value, self.other] if self.rank == 0 else [self.other, value]

    import json

    mine = {"epochs": 3, "layers": [2, 8, 2], "nesterov": False}
    theirs = json.dumps({"epochs": 3, "layers": [2, 9, 2], "nesterov": True}, sort_keys=True)
    check = nx.distributed.check_same_settings
    for rank in (0, 1):
        with pytest.raises(nx.distributed.RanksDiffer) as info:
            other = theirs if rank == 0 else json.dumps(mine, sort_keys=True)
            check(Gathered(rank, other), mine if rank == 0 else json.loads(theirs), spell=lambda k: f"--{k}")
        assert info.value.silent == (rank != 0)
    assert str(info.value) == ("the ranks were given different options: --layers is 2 8 2 on rank 0 but 2 9 2 on "
                               "rank 1; --nesterov is not given on rank 0 but given on rank 1; every rank must be "
                               "given the same")
    check(Gathered(0, json.dumps(mine)), mine)  # the same: nothing said
    check(nx.distributed.Communicator(), mine)  # one process: nothing to compare


def test_parts_cover_every_row_once():
    for n in (0, 1, 2, 7, 16, 103):
        for size in (1, 2, 3, 4):
            parts = [nx.distributed.part(n, rank, size) for rank in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


@needs_mpi
@pytest.mark.skipif(nx.backends.cuda_status()[0] == 0, reason="needs a CUDA GPU")
def test_two_ranks_sharing_one_gpu_through_the_host(tmp_path):
    result, out = launch(2, dict(SPEC, backend="mpi", device="cuda:0"), tmp_path)
    assert result.returncode == 0, result.stderr
    reference, _ = _one_process(SPEC)
    assert _largest_difference(_ranks(out, 2)[0][0], reference) <= 1e-12


@needs_mpi
@pytest.mark.parametrize("device", ["torch:cpu", "jax:cpu"])
def test_two_ranks_on_a_library_device_through_host_staged_collectives(device, tmp_path):
    """PyTorch's and JAX's arrays go through host copies to MPI, and train as one NumPy process."""
    pytest.importorskip(device.split(":")[0])
    spec = dict(SPEC, device=device, n=64, epochs=1, validation_split=0.0)  # one batch shape: few compilations
    result, out = launch(2, spec, tmp_path)
    assert result.returncode == 0, result.stderr
    ranks = _ranks(out, 2)
    for a, b in zip(ranks[1][0], ranks[0][0]):
        np.testing.assert_array_equal(a, b)
    reference, _ = _one_process(dict(spec, device="cpu"))
    assert _largest_difference(ranks[0][0], reference) <= 1e-12


@needs_mpi
@pytest.mark.skipif(nx.backends.cuda_status()[0] < 2, reason="NCCL needs at least two GPUs")
def test_nccl_between_two_gpus(tmp_path):
    result, out = launch(2, dict(SPEC, backend="nccl", device="rank"), tmp_path)
    assert result.returncode == 0, result.stderr
    reference, _ = _one_process(SPEC)
    assert _largest_difference(_ranks(out, 2)[0][0], reference) <= 1e-12


# ---- ranks given different options -------------------------------------------------------------------
def _mpmd(tmp_path, per_rank, timeout=120, folders=None):
    """mpiexec with one command line per rank (MPMD: `-n 1 A : -n 1 B`), each in its own folder."""
    command = []
    for rank, args in enumerate(per_rank):
        folder = (folders or {}).get(rank, tmp_path)
        command += ([":"] if command else []) + ["-n", "1", "-wdir", str(folder), sys.executable, "-m", "nn_xp",
                                                 "train", "--distributed", *args]
    return subprocess.run([MPIEXEC, *command], capture_output=True, text=True, env=_env(), timeout=timeout,
                          cwd=tmp_path)  # ranks that disagree must not wait for ever


@needs_mpi
@pytest.mark.parametrize("first,second,said", [
    (["--epochs", "3"], ["--epochs", "5"], "--epochs is 3 on rank 0 but 5 on rank 1"),
    (["--batch-size", "16", "--layers", "2", "8", "2"], ["--batch-size", "32", "--layers", "2", "9", "2"],
     "--batch-size is 16 on rank 0 but 32 on rank 1; --layers is 2 8 2 on rank 0 but 2 9 2 on rank 1"),
    (["--optimizer", "sgd", "--learning-rate", "0.1"], ["--optimizer", "sgd", "--learning-rate", "0.2"],
     "--learning-rate is 0.1 on rank 0 but 0.2 on rank 1"),
    (["--dtype", "float64", "--dropout", "0.1"], ["--dtype", "float32"],
     "--dropout is 0.1 on rank 0 but not given on rank 1; --dtype is float64 on rank 0 but float32 on rank 1"),
])
def test_ranks_given_different_options_stop_at_once_with_one_message(first, second, said, tmp_path):
    common = ["--dataset", "moons", "--n-samples", "80", "--quiet"]
    result = _mpmd(tmp_path, [common + first, common + second])
    assert result.returncode != 0
    assert result.stderr.count("nn-xp: error:") == 1, result.stderr
    assert f"nn-xp: error: the ranks were given different options: {said}; every rank must be given" \
        in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "MPI_Abort" not in result.stderr


@needs_mpi
def test_ranks_given_different_data_under_one_name_stop_before_training(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    for name, columns in (("a", 3), ("b", 2)):  # rank 1's file has a feature fewer
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "d.npz", X=X[:, :columns], y=(X[:, 0] > 0).astype(int))
    args = ["--dataset", "d.npz", "--epochs", "2", "--quiet"]
    result = _mpmd(tmp_path, [args, args], folders={0: tmp_path / "a", 1: tmp_path / "b"})
    assert result.returncode != 0 and result.stderr.count("nn-xp: error:") == 1, result.stderr
    assert "the ranks were given different data: the hash of d.npz is " in result.stderr
    assert "Traceback" not in result.stderr


@needs_mpi
def test_what_each_rank_prints_and_writes_may_differ(tmp_path):
    common = ["--dataset", "moons", "--n-samples", "80", "--epochs", "2"]
    result = _mpmd(tmp_path, [common + ["--save", "m.npz", "--verbose-epoch", "1"], common + ["--quiet"]])
    assert result.returncode == 0, result.stderr
    assert nx.load(tmp_path / "m.npz", device="cpu").layer_sizes == [2, 64, 2]
