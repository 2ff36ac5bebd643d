"""The nn-xp command line, driven end to end in a subprocess as a user would."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import nn_xp as nx


def run(*args, cwd=None, check=True):
    env = {**os.environ, "NN_XP_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", "nn_xp", *args], capture_output=True, text=True,
                            cwd=cwd, env=env, timeout=240)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def test_the_notebooks_command_works_as_written(tmp_path):
    result = run("train", "--layers", "1", "10", "10", "1", "--learning_rate", "0.01", "--epochs", "1000",
                 "--verbose_epoch", "200")
    epochs = [line.split(" Loss : ")[0] for line in result.stdout.splitlines() if line.startswith("Epoch ")]
    assert epochs == ["Epoch 0", "Epoch 200", "Epoch 400", "Epoch 600", "Epoch 800"]
    assert "device cpu" in result.stdout
    final = float(result.stdout.split("train: loss ")[1].split(",")[0])
    assert final < 1e-3


def test_hyphenated_spellings_and_quiet(tmp_path):
    result = run("train", "--layers", "1", "10", "10", "1", "--learning-rate", "0.01", "--epochs", "20",
                 "--verbose-epoch", "5", "--quiet")
    assert "Epoch" not in result.stdout and "train: loss" in result.stdout


def test_train_save_predict_evaluate_round_trip(tmp_path):
    model_path, plot_path = tmp_path / "runs" / "iris.npz", tmp_path / "runs" / "iris.png"
    result = run("train", "--dataset", "iris", "--epochs", "40", "--standardize", "--test-size", "0.2",
                 "--validation-split", "0.2", "--early-stopping", "5", "--save", str(model_path),
                 "--plot", str(plot_path), "--quiet")
    assert "test: loss" in result.stdout and "accuracy" in result.stdout
    assert model_path.exists() and plot_path.stat().st_size > 10_000
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    np.savez(tmp_path / "iris_input.npz", X=X, y=y)
    predicted = run("predict", str(model_path), str(tmp_path / "iris_input.npz")).stdout.split()
    model = nx.load(str(model_path), device="cpu")
    expected = model.predict(X)  # the model standardises raw X itself, and gives the labels themselves
    assert predicted == expected.tolist()
    assert model.classes == ["setosa", "versicolor", "virginica"] and set(predicted) <= set(model.classes)
    # the stored statistics are applied: by hand, the network's own argmax agrees
    by_hand = nx.to_numpy(model.forward((X - model.preprocessing["mean"]) / np.asarray(model.preprocessing["std"])))
    assert expected.tolist() == [model.classes[i] for i in by_hand.argmax(axis=1)]
    report = json.loads(run("evaluate", str(model_path), str(tmp_path / "iris_input.npz"), "--json").stdout)
    assert report["accuracy"] == pytest.approx(np.mean(by_hand.argmax(axis=1) == y))
    assert report["accuracy"] > 0.8
    named = run("evaluate", str(model_path), "iris").stdout
    assert named.startswith("loss ") and "accuracy" in named


def test_predict_from_csv_to_a_file(tmp_path):
    model_path = tmp_path / "sine.npz"
    run("train", "--epochs", "50", "--save", str(model_path), "--quiet")
    x = np.linspace(-1, 1, 7)
    (tmp_path / "in.csv").write_text("x,ignored\n" + "\n".join(f"{v},0" for v in x) + "\n")
    run("predict", str(model_path), str(tmp_path / "in.csv"), "--target", "ignored", "--output",
        str(tmp_path / "out.csv"))
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == "prediction"
    values = np.loadtxt(tmp_path / "out.csv", delimiter=",", ndmin=2, skiprows=1)[:, 0]
    model = nx.load(str(model_path), device="cpu")
    np.testing.assert_allclose(values, nx.to_numpy(model.predict(x[:, None]))[:, 0], rtol=1e-6)


def test_resume_continues_a_run_exactly(tmp_path):
    straight, first = tmp_path / "straight.npz", tmp_path / "first.npz"
    common = ["train", "--dataset", "moons", "--optimizer", "adam", "--quiet", "--seed", "3"]
    run(*common, "--epochs", "6", "--save", str(straight))
    run(*common, "--epochs", "3", "--save", str(first))
    run(*common, "--epochs", "3", "--resume", str(first), "--save", str(first))
    a, b = nx.load(str(straight), device="cpu"), nx.load(str(first), device="cpu")
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p, q)
    assert b.history.epoch == list(range(6))


def test_info_reports_devices_and_why():
    out = run("info").stdout
    assert f"nn_xp {nx.__version__}" in out and "devices: cpu" in out and "CUDA:" in out
    mpi = nx.distributed.mpi_status()
    assert f"MPI: {'usable, ' if mpi[0] else 'not usable: '}" in out and "NCCL: " in out


def test_help_reads_well():
    out = run("train", "--help").stdout
    for option in ("--layers", "--learning-rate", "--dataset", "--device", "--optimizer", "--save", "--resume",
                   "--plot"):
        assert option in out


@pytest.mark.parametrize("args,words", [
    (["train", "--dataset", "mnist-fashion"], "dataset"),
    (["train", "--dataset", "missing.csv"], "missing.csv"),
    (["train", "--layers", "2", "10", "1"], "--layers starts with 2 inputs"),
    (["train", "--activation", "swish9"], "activation"),
    (["train", "--device", "tpu"], "device"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--learning-rate", "-1"], "--learning-rate"),
    (["predict", "nope.npz", "in.csv"], "nope.npz"),
    (["evaluate", "broken.npz", "iris"], "broken.npz"),
    (["predict", "good.npz", "wrong.npz"], "features"),
    (["train", "--dataset", "bad.csv", "--target", "y"], "bad.csv"),
    (["train", "--dataset", "bad.csv", "--target", "label"], "label"),
])
def test_errors_are_one_line_without_traceback(tmp_path, args, words):
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "bad.csv").write_text("a,b,y\n1,2,0\n3,oops,1\n")
    np.savez(tmp_path / "wrong.npz", X=np.zeros((3, 5)))
    nx.MLP([1, 3, 1], device="cpu", seed=0).save(str(tmp_path / "good.npz"))
    result = run(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert words in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("args,words", [
    (["train", "--gamma", "0.5"], "--gamma needs --schedule"),
    (["train", "--warmup-epochs", "3", "--schedule", "step"], "--warmup-epochs needs --schedule cosine"),
    (["train", "--target", "y"], "--target names a column"),
    (["train", "--rho", "0.5"], "--rho does not apply to the adam optimizer"),
    (["train", "--line-search", "strong_wolfe"], "--line-search does not apply to the adam optimizer"),
    (["train", "--optimizer", "lbfgs", "--clip-norm", "1"], "clip_norm and clip_value must be None"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "--layers", "1", "99999999999", "1"], "out of memory"),
])
def test_options_that_would_be_ignored_are_errors(args, words):
    result = run(*args, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0]


def test_zero_valued_hyperparameters_are_kept(tmp_path):
    path = tmp_path / "m.npz"
    run("train", "--epochs", "2", "--beta1", "0", "--quiet", "--save", str(path))
    assert nx.load(str(path), device="cpu").optimizer.beta1 == 0.0


def test_dropout_and_l2_are_saved_and_a_resume_keeps_them(tmp_path):
    first, second = tmp_path / "half.npz", tmp_path / "whole.npz"
    common = ("--dataset", "moons", "--layers", "2", "16", "16", "2", "--seed", "3", "--quiet")
    run("train", *common, "--epochs", "2", "--dropout", "0.3", "0.1", "--l2", "0.05", "--save", str(first))
    model = nx.load(str(first), device="cpu")
    assert model.dropout == [0.3, 0.1] and model.l2 == 0.05
    run("train", "--dataset", "moons", "--seed", "3", "--resume", str(first), "--epochs", "2", "--quiet",
        "--save", str(second))
    resumed = nx.load(str(second), device="cpu")
    assert resumed.dropout == [0.3, 0.1] and resumed.l2 == 0.05 and len(resumed.history) == 4
    # The same four epochs in one run give the same model: the masks continued where they stopped.
    straight = tmp_path / "straight.npz"
    run("train", *common, "--epochs", "4", "--dropout", "0.3", "0.1", "--l2", "0.05", "--save", str(straight))
    for a, b in zip(nx.load(str(straight), device="cpu").parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a, b)
    refused = run("train", "--dataset", "moons", "--resume", str(first), "--dropout", "0.5", check=False)
    assert refused.returncode == 2 and "--dropout [0.5] differs from the resumed model's [0.3, 0.1]" in refused.stderr
    bad = run("train", *common, "--dropout", "1.0", check=False)
    assert bad.returncode == 2 and "dropout must be a finite number in [0, 1)" in bad.stderr
    bad = run("train", *common, "--l2", "-1", check=False)
    assert bad.returncode == 2 and "l2 must be a finite number >= 0" in bad.stderr


def test_everyday_reliability(tmp_path):
    """Abbreviations refused; unwritable --save refused before training; a loss or output that does
    not fit the classes says what to change; --activation's count reads well; a NaN model refused."""
    result = run("train", "--epoch", "3", check=False)
    assert result.returncode == 2 and "unrecognized arguments: --epoch" in result.stderr
    result = run("train", "--dataset", "iris", "--save", "/proc/nn-xp-test/x.npz", check=False)
    assert result.returncode == 2 and "--save /proc/nn-xp-test/x.npz: cannot write there" in result.stderr
    assert "Epoch" not in result.stdout and "device" not in result.stdout  # refused before any training
    result = run("train", "--dataset", "digits", "--loss", "mse", check=False)
    assert result.returncode == 2 and "--loss mse needs numeric targets" in result.stderr
    assert "10 classes" in result.stderr
    result = run("train", "--dataset", "iris", "--output-activation", "sigmoid", check=False)
    assert result.returncode == 2 and "the data has 3 classes: use softmax" in result.stderr
    result = run("train", "--layers", "1", "10", "1", "--activation", "tanh", "relu", check=False)
    assert "--activation gives 2 names but the network has 1 hidden layer: give one name for every" in result.stderr
    path = tmp_path / "m.npz"
    model = nx.MLP([2, 3, 2], output_activation="softmax", seed=0)
    model.parameters()[2][0, 0] = np.nan
    model.save(path)
    result = run("evaluate", str(path), "moons", check=False)
    assert result.returncode == 2 and "member 'param_2' holds NaN or infinite weights" in result.stderr


def test_a_broken_pipe_is_silent_and_info_names_the_loops_and_the_blas(tmp_path):
    model_path = tmp_path / "m.npz"
    run("train", "--dataset", "moons", "--epochs", "2", "--quiet", "--save", str(model_path))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(20000, 2)))
    env = {**os.environ, "NN_XP_DEVICE": "cpu"}
    shell = f"{sys.executable} -m nn_xp predict {model_path} {tmp_path / 'x.npy'} | head -1"
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.strip() in ("0", "1") and result.stderr == ""
    info = run("info").stdout
    assert "compiled loops (nn_xp/backends/_native.c): " in info and "BLAS: " in info


def test_evaluate_report_names_the_classes(tmp_path):
    pytest.importorskip("sklearn")
    model_path = tmp_path / "iris.npz"
    run("train", "--dataset", "iris", "--epochs", "20", "--quiet", "--save", str(model_path))
    report = run("evaluate", str(model_path), "iris", "--report").stdout
    for name in ("setosa", "versicolor", "virginica", "precision", "recall", "f1-score"):
        assert name in report


@pytest.fixture
def wine_tables(tmp_path):
    """scikit-learn's wine as a CSV with string labels and an ID column, reordered and cut copies."""
    pytest.importorskip("pandas")
    from sklearn.datasets import load_wine

    bunch = load_wine(as_frame=True)
    frame = bunch.frame.drop(columns=["target"])
    frame["kind"] = [str(bunch.target_names[i]) for i in bunch.target]
    frame.insert(0, "id", [f"w{i}" for i in range(len(frame))])
    frame["weight"] = np.linspace(0.5, 2.0, len(frame))
    paths = {name: tmp_path / f"{name}.csv" for name in ("train", "wine", "reordered", "missing")}
    frame.drop(columns=["id"]).to_csv(paths["train"], index=False)  # an ID is no feature
    frame.to_csv(paths["wine"], index=False)
    frame[list(reversed(frame.columns))].to_csv(paths["reordered"], index=False)
    frame.drop(columns=["hue"]).to_csv(paths["missing"], index=False)
    return tmp_path, paths, frame


def test_a_table_model_knows_its_columns_and_labels(wine_tables):
    tmp_path, paths, frame = wine_tables
    model_path = tmp_path / "m.npz"
    run("train", "--dataset", str(paths["train"]), "--target", "kind", "--sample-weight", "weight",
        "--class-weight", "balanced", "--standardize", "--test-size", "0.2", "--validation-split", "0.1",
        "--epochs", "30", "--save", str(model_path), "--quiet", cwd=tmp_path, check=True)
    model = nx.load(model_path, device="cpu")
    assert model.classes == ["class_0", "class_1", "class_2"] and model.target == "kind"
    assert model.feature_names == [c for c in frame.columns if c not in ("id", "kind", "weight")]
    # --id passes the ID through; labels come back as labels; the file has a header row.
    out = tmp_path / "p.csv"
    result = run("predict", str(model_path), str(paths["wine"]), "--id", "id", "-o", str(out))
    assert "ignoring columns ['weight']" in result.stderr  # the target and the ID are expected
    assert "kind" not in result.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "id,prediction" and lines[1].split(",")[0] == "w0"
    assert {line.split(",")[1] for line in lines[1:]} <= {"class_0", "class_1", "class_2"}
    # Reordered columns give the same predictions, matched by name.
    reordered = run("predict", str(model_path), str(paths["reordered"]), "--id", "id").stdout
    assert reordered.splitlines() == lines[1:]
    proba = tmp_path / "proba.csv"
    run("predict", str(model_path), str(paths["wine"]), "--proba", "-o", str(proba))
    assert proba.read_text().splitlines()[0] == "class_0,class_1,class_2"
    missing = run("predict", str(model_path), str(paths["missing"]), check=False)
    assert missing.returncode == 2 and "no column 'hue'; the model was trained on the columns" in missing.stderr


def test_the_split_is_remembered_and_held_out_rows_can_be_scored(wine_tables):
    tmp_path, paths, _ = wine_tables
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    common = ("--dataset", str(paths["train"]), "--target", "kind", "--sample-weight", "weight", "--quiet")
    trained = run("train", *common, "--test-size", "0.25", "--epochs", "5", "--save", str(first)).stdout
    test_line = next(line for line in trained.splitlines() if line.startswith("test: "))
    held_out = run("evaluate", str(first), str(paths["train"]), "--held-out").stdout.strip()
    assert "test: " + held_out == test_line  # the same rows as the training run's test score
    resumed = run("train", *common, "--resume", str(first), "--epochs", "3", "--save", str(second)).stdout
    assert "test: " in resumed  # the stored test_size, without --test-size
    assert nx.load(second, device="cpu").split == nx.load(first, device="cpu").split
    refused = run("train", *common, "--resume", str(first), "--test-size", "0.5", check=False)
    assert refused.returncode == 2 and "differs from the resumed model's split (0.25)" in refused.stderr
    plain = tmp_path / "plain.npz"
    run("train", "--dataset", "moons", "--epochs", "2", "--quiet", "--save", str(plain))
    refused = run("evaluate", str(plain), "moons", "--held-out", check=False)
    assert refused.returncode == 2 and "--held-out needs a model trained with --test-size" in refused.stderr


def test_lbfgs_trains_full_batch_and_resumes(tmp_path):
    """L-BFGS on a problem whose answer does not depend on the rounding path: a linear network
    (1-10-10-1, no nonlinearity) on the sine data under MSE. Every local minimum of a deep linear
    network under squared loss is a global one (Kawaguchi, "Deep learning without poor local minima",
    2016), and the global minimum is the least-squares line's MSE. With a nonlinear network the run
    can end in a local minimum chosen by BLAS rounding (sigmoid output: loss 0.0074 instead of about
    2e-4 with OpenBLAS's SkylakeX kernels on this seed)."""
    path = tmp_path / "m.npz"
    result = run("train", "--layers", "1", "10", "10", "1", "--activation", "linear", "--output-activation",
                 "linear", "--optimizer", "lbfgs", "--line-search", "strong_wolfe", "--dtype", "float64",
                 "--epochs", "20", "--quiet", "--save", str(path))
    final = float(result.stdout.split("train: loss ")[1].split(",")[0])
    data = nx.datasets.load_dataset("sine")
    A = np.column_stack([data.X[:, 0], np.ones(len(data.y))])
    line = np.linalg.lstsq(A, data.y, rcond=None)[0]
    least_squares = float(np.mean((A @ line - data.y) ** 2))  # 0.1059057...; one step leaves 0.80
    # The CLI prints 6 significant digits: half a unit in the last one is the tolerance. The loss
    # L-BFGS leaves above the minimum (about 1e-10 here) is second order in the distance to it.
    assert abs(final - least_squares) <= 0.5e-6
    model = nx.load(str(path), device="cpu")
    assert model.optimizer.name == "lbfgs" and model.optimizer.line_search_fn == "strong_wolfe"
    assert model.optimizer.step_count == 20
    run("train", "--resume", str(path), "--optimizer", "lbfgs", "--epochs", "2", "--quiet", "--save", str(path))
    assert nx.load(str(path), device="cpu").optimizer.step_count == 22


def test_ctrl_c_writes_the_model_and_exits_130(tmp_path):
    import signal
    import time

    model_path = tmp_path / "m.npz"
    env = {**os.environ, "NN_XP_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "nn_xp", "train", "--dataset", "moons", "--epochs", "100000", "--verbose-epoch", "1",
         "--save", str(model_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout.readline().startswith("Epoch 0")  # training has started
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert "[stopped: interrupted]" in out and f"model written to {model_path}" in out
    assert "nn-xp: interrupted" in err
    assert nx.load(model_path, device="cpu").history.stop_reason == "interrupted"


def test_one_hot_and_impute_travel_with_a_table_model_and_predict_matches_by_name(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({"color": rng.choice(["red", "green", "blue"], n), "x": rng.normal(size=n),
                          "label": rng.choice(["yes", "no"], n)})
    frame.loc[3, "x"] = np.nan
    frame.to_csv(tmp_path / "train.csv", index=False)
    new = frame.drop(columns=["label"]).assign(id=[f"r{i}" for i in range(n)])
    new.loc[0, "color"] = "purple"
    new[["id", "x", "color"]].to_csv(tmp_path / "new.csv", index=False)  # another order, an ID
    refused = run("train", "--dataset", str(tmp_path / "train.csv"), "--target", "label", check=False)
    assert refused.returncode == 2 and ("--one-hot" in refused.stderr or "--impute" in refused.stderr)
    run("train", "--dataset", str(tmp_path / "train.csv"), "--target", "label", "--one-hot", "--impute", "mean",
        "--epochs", "3", "--quiet", "--save", str(tmp_path / "m.npz"))
    result = run("predict", str(tmp_path / "m.npz"), str(tmp_path / "new.csv"), "--id", "id")
    lines = result.stdout.splitlines()
    assert len(lines) == n and lines[0].startswith("r0,") and lines[0].split(",")[1] in ("yes", "no")
    assert "categories not seen in training ['purple']" in result.stderr and "new.csv" in result.stderr


def test_streaming_on_trains_the_same_model_as_off(tmp_path):
    paths = {}
    for mode in ("off", "on"):
        paths[mode] = tmp_path / f"{mode}.npz"
        run("train", "--dataset", "iris", "--epochs", "3", "--batch-size", "16", "--quiet", "--seed", "1",
            "--streaming", mode, "--save", str(paths[mode]))
    for a, b in zip(*(nx.load(str(p), device="cpu").parameters() for p in paths.values())):
        np.testing.assert_array_equal(a, b)
    bad = run("train", "--streaming", "sometimes", check=False)
    assert bad.returncode == 2 and "--streaming" in bad.stderr


def test_a_diverging_run_is_an_error_and_leaves_the_saved_model_alone(tmp_path):
    model_path, plot_path = tmp_path / "model.npz", tmp_path / "plot.png"
    nx.MLP([20, 4, 2], output_activation="softmax", device="cpu").save(model_path)
    before = model_path.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "nn_xp", "train", "--dataset", "synthetic", "--n-samples", "300", "--optimizer", "sgd",
         "--learning-rate", "1e6", "--epochs", "5", "--save", str(model_path), "--plot", str(plot_path)],
        capture_output=True, text=True, env={**os.environ, "NN_XP_DEVICE": "cpu"}, timeout=120)
    assert result.returncode == 2
    assert "nn-xp: error: the training loss became non-finite (NaN or infinite) in epoch 0" in result.stderr
    assert "try a smaller --learning-rate than 1e+06" in result.stderr
    assert f"--save {model_path} left as it was" in result.stderr
    assert "RuntimeWarning" not in result.stderr and "overflow" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert model_path.read_bytes() == before and not plot_path.exists()


@pytest.fixture(scope="module")
def penguins_model(tmp_path_factory):
    palmerpenguins = pytest.importorskip("palmerpenguins", reason="the penguins table needs palmerpenguins")
    folder = tmp_path_factory.mktemp("penguins")
    penguins = palmerpenguins.load_penguins()
    penguins.to_csv(folder / "penguins.csv", index=False)
    result = run("train", "--dataset", str(folder / "penguins.csv"), "--target", "species", "--one-hot", "--impute",
                 "mean", "--standardize", "--test-size", "0.2", "--validation-split", "0.1", "--epochs", "7",
                 "--quiet", "--save", str(folder / "m.npz"), "--log", str(folder / "logs" / "train.csv"))
    assert "training log written to" in result.stdout
    return folder, penguins


def test_inspect_prints_the_layers_the_pipeline_and_the_training(penguins_model):
    folder, penguins = penguins_model
    text = run("inspect", str(folder / "m.npz")).stdout
    # island (3 categories) + 4 measurements + sex (2) + year = 10 inputs; 64 hidden units; 3 species
    assert [int(line.split()[-1]) for line in text.splitlines() if line.startswith("dense_")] == [
        10 * 64 + 64, 64 * 3 + 3]
    assert f"Total params: {10 * 64 + 64 + 64 * 3 + 3}" in text
    assert "island             one-hot, 3 categories (Biscoe, Dream, Torgersen)" in text
    train_rows = 344 - 69 - 28  # the test rows (20 %), then the validation rows (10 % of the rest)
    assert train_rows == 247 and len(penguins) == 344
    assert "bill_length_mm     number; missing: " in text and "(the training mean)" in text
    assert "classes (3): Adelie, Chinstrap, Gentoo" in text and "target: species (classification)" in text
    assert "epochs trained: 7" in text and "optimizer: adam(learning_rate=0.001" in text
    assert f"{7 * -(-train_rows // 32)} steps" in text  # batches of 32 by default
    assert "split of 344 rows (seed 0): test 0.2, validation 0.1" in text


def test_inspect_json_holds_the_same_facts_and_the_log_the_history(penguins_model):
    folder, penguins = penguins_model
    facts = json.loads(run("inspect", str(folder / "m.npz"), "--json").stdout)
    assert [c["name"] for c in facts["columns"]] == [c for c in penguins.columns if c != "species"]
    assert [c["read"] for c in facts["columns"]] == ["one-hot"] + ["number"] * 4 + ["one-hot", "number"]
    assert facts["classes"] == sorted(penguins["species"].unique())
    assert facts["split"]["test_size"] == 0.2 and facts["split"]["n_samples"] == 344
    assert [layer["params"] for layer in facts["layers"]] == [704, 195, 0] and facts["total_params"] == 899
    assert facts["options"]["loss"] == "cross_entropy" and facts["options"]["optimizer"]["name"] == "adam"
    assert facts["history"]["epochs"] == 7
    model = nx.load(folder / "m.npz", device="cpu")
    assert facts["history"]["last"] == {k: v[-1] for k, v in model.history.history.items()}
    with open(folder / "logs" / "train.csv") as handle:
        rows = [line.split(",") for line in handle.read().splitlines()]
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_time"]
    assert len(rows) == 1 + 7
    for index, name in enumerate(rows[0]):
        expected = model.history.epoch if name == "epoch" else model.history.history[name]
        assert [float(row[index]) for row in rows[1:]] == expected


def test_a_bad_log_path_is_refused_before_training(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = run("train", "--epochs", "3", "--save", str(tmp_path / "m.npz"), "--log",
                 str(tmp_path / "a-file" / "log.csv"), check=False)
    assert result.returncode == 2 and "--log" in result.stderr and "a-file" in result.stderr
    assert "Epoch" not in result.stdout and not (tmp_path / "m.npz").exists()
    folder = run("train", "--epochs", "3", "--log", str(tmp_path), check=False)
    assert folder.returncode == 2 and "is a folder" in folder.stderr and "Epoch" not in folder.stdout
