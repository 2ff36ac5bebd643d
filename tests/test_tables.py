"""Real tables through every door: the Palmer penguins and the vega cars, as their packages ship
them (text columns, missing values, integer and date columns), trained with `nn-xp train` and
asked by the library, `nn-xp predict`, `nn-xp evaluate` and onnxruntime.

Labels are compared between doors of one model (never against numbers this code produced); where
two doors compute in different precisions, rows whose two best classes are closer than
TIE_MARGIN are left out, so no verdict rests on rounding.
"""

import csv
import functools
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import nn_xp as nx

pd = pytest.importorskip("pandas")
palmerpenguins = pytest.importorskip("palmerpenguins")
vega_datasets = pytest.importorskip("vega_datasets")

# Two best class probabilities closer than this may swap between float32 and float64 doors.
TIE_MARGIN = 1e-3
PENGUIN_NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
# Short training that still separates the penguins: a learning rate above Adam's default.
QUICK = ("--epochs", "30", "--learning-rate", "0.01", "--seed", "0", "--quiet")


def run(*args, check=True):
    env = {**os.environ, "NN_XP_DEVICE": "cpu", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", "nn_xp", *map(str, args)], capture_output=True, text=True,
                            env=env, timeout=240)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def refused(*args) -> str:
    """The one-line error of a command that must fail."""
    result = run(*args, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def penguins():
    return palmerpenguins.load_penguins()


@functools.lru_cache(maxsize=1)
def _cars():
    from vega_datasets import local_data

    with warnings.catch_warnings():  # the package's own read_json call, deprecated by pandas
        warnings.simplefilter("ignore")
        return local_data.cars()


def cars():
    return _cars().copy()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tables as CSV files: penguins, cars (Year written as 1970-01-01), and cars with
    semicolons and decimal commas."""
    folder = tmp_path_factory.mktemp("tables")
    paths = {"penguins": folder / "penguins.csv", "cars": folder / "cars.csv", "cars_comma": folder / "cars_comma.csv"}
    penguins().to_csv(paths["penguins"], index=False)
    cars().to_csv(paths["cars"], index=False)
    cars().to_csv(paths["cars_comma"], index=False, sep=";", decimal=",")
    return paths


@pytest.fixture(scope="module")
def penguin_model(files, tmp_path_factory):
    """The issue's command: species from every other column, text one-hot, numbers imputed and
    standardised, a fifth of the rows held out; two hidden layers."""
    path = tmp_path_factory.mktemp("model") / "penguins.npz"
    result = run("train", "--dataset", files["penguins"], "--target", "species", "--one-hot", "--impute", "mean",
                 "--standardize", "--test-size", "0.2", "--hidden", "16", "8", *QUICK, "--save", path)
    return path, result


def _predict_csv(model_path, rows_path, out_path, *extra):
    run("predict", model_path, rows_path, "--output", out_path, *extra)
    with open(out_path, newline="") as handle:
        return list(csv.DictReader(handle))


def _clear(probabilities) -> np.ndarray:
    """Rows whose best class leads the next by more than TIE_MARGIN."""
    top = np.sort(np.asarray(probabilities, dtype=np.float64), axis=1)
    return top[:, -1] - top[:, -2] > TIE_MARGIN


def _test_line(stdout: str) -> dict:
    """{metric: value} of the line 'test: loss ..., accuracy ...' (or evaluate's own line)."""
    line = next(line for line in stdout.splitlines() if line.startswith(("test: ", "loss ")))
    pairs = line.removeprefix("test: ").split(", ")
    return {name: float(value) for name, value in (pair.split(" ") for pair in pairs)}


# ---- 1. a model trained with --standardize predicts the same in the library ------------------------
def test_a_standardised_cli_model_predicts_raw_numbers_in_the_library_as_the_cli_does(tmp_path):
    table = penguins().dropna(subset=PENGUIN_NUMBERS)[PENGUIN_NUMBERS + ["species"]]
    table.to_csv(tmp_path / "numbers.csv", index=False)
    model_path = tmp_path / "m.npz"
    run("train", "--dataset", tmp_path / "numbers.csv", "--target", "species", "--standardize", *QUICK,
        "--save", model_path)
    model = nx.load(model_path, device="cpu")
    X = table[PENGUIN_NUMBERS].to_numpy()
    from_numbers = model.predict(X)  # raw grams and millimetres: the model standardises them itself
    from_frame = model.predict(table[PENGUIN_NUMBERS[::-1]])  # by name, in any order
    cli = [row["prediction"] for row in _predict_csv(model_path, tmp_path / "numbers.csv", tmp_path / "out.csv")]
    assert from_numbers.tolist() == from_frame.tolist() == cli
    assert set(cli) <= set(model.classes) == set(table["species"])
    # Unstandardised grams swamp the millimetres: such a model is near chance (a third); this one is not.
    assert np.mean(from_numbers == table["species"].to_numpy()) > 0.9


def test_the_library_fits_a_frame_with_text_labels_and_predicts_labels():
    table = penguins().dropna(subset=PENGUIN_NUMBERS)
    model = nx.MLP([len(PENGUIN_NUMBERS), 16, 3], output_activation="softmax", device="cpu", seed=0)
    model.fit(table[PENGUIN_NUMBERS], table["species"], standardize=True, epochs=30, batch_size=32,
              learning_rate=0.01, verbose=0)
    assert model.feature_names == PENGUIN_NUMBERS
    assert sorted(model.classes) == sorted(set(table["species"]))
    predicted = model.predict(table[PENGUIN_NUMBERS])
    assert set(predicted.tolist()) <= set(model.classes)
    assert np.mean(predicted == table["species"].to_numpy()) > 0.9


# ---- 2. the same labels through every door --------------------------------------------------------
def test_library_cli_and_onnx_give_the_same_labels_on_messy_rows(penguin_model, files, tmp_path):
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    model_path, _ = penguin_model
    model = nx.load(model_path, device="cpu")
    assert model.feature_names == ["island", *PENGUIN_NUMBERS, "sex", "year"]
    # Rows as another system would send them: columns in another order, an ID, missing values.
    rows = penguins().drop(columns=["species"])
    rows = rows[rows.columns[::-1]]
    rows.insert(0, "ID", [f"P{i:03d}" for i in range(len(rows))])
    rows.loc[rows.index[::7], "sex"] = None
    rows.loc[rows.index[1::11], "body_mass_g"] = np.nan
    rows.loc[rows.index[2::13], ["bill_length_mm", "flipper_length_mm"]] = np.nan
    rows.to_csv(tmp_path / "rows.csv", index=False)

    library = model.predict(rows)
    probabilities = nx.to_numpy(model.predict_proba(rows))
    out = _predict_csv(model_path, tmp_path / "rows.csv", tmp_path / "out.csv", "--id", "ID")
    assert [row["ID"] for row in out] == rows["ID"].tolist()
    cli = np.asarray([row["prediction"] for row in out])

    run("export", model_path, tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(os.fspath(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    categories = set(model.preprocessor.encoding["one_hot"])
    feed = {}
    for graph_input in session.get_inputs():
        column = rows[[graph_input.name]]
        if graph_input.name in categories:
            assert graph_input.type == "tensor(string)"
            feed[graph_input.name] = column.fillna("").astype(str).to_numpy(dtype=object)
        else:
            assert graph_input.type == "tensor(float)"
            feed[graph_input.name] = column.to_numpy(dtype=np.float32, na_value=np.nan)
    assert sorted(feed) == sorted(model.feature_names)
    onnx_labels = session.run(["label"], feed)[0].ravel()

    clear = _clear(probabilities)
    assert clear.mean() > 0.9  # nearly every row is compared
    assert library[clear].tolist() == cli[clear].tolist() == onnx_labels[clear].tolist()
    assert set(library.tolist()) == set(model.classes)  # labels that could have been wrong
    truth = penguins()["species"].to_numpy()
    assert np.mean(library == truth) > 0.9


# ---- 3. a weight column is no feature ---------------------------------------------------------------
def test_the_sample_weight_column_is_not_a_feature(tmp_path):
    table = penguins()
    table["w"] = np.where(table["species"] == "Chinstrap", 2.0, 1.0)
    table.to_csv(tmp_path / "weighted.csv", index=False)
    model_path = tmp_path / "m.npz"
    run("train", "--dataset", tmp_path / "weighted.csv", "--target", "species", "--sample-weight", "w",
        "--one-hot", "--impute", "mean", "--standardize", *QUICK, "--save", model_path)
    model = nx.load(model_path, device="cpu")
    assert "w" not in model.feature_names
    assert model.layer_sizes[0] == len(model.preprocessor.feature_names_out)
    assert not any(name.startswith("w") for name in model.preprocessor.feature_names_out)
    # A table without the weight column is all predict needs.
    with_weights = model.predict(table)
    without = table.drop(columns=["w", "species"])
    without.to_csv(tmp_path / "rows.csv", index=False)
    cli = [row["prediction"] for row in _predict_csv(model_path, tmp_path / "rows.csv", tmp_path / "out.csv")]
    assert model.predict(without).tolist() == with_weights.tolist() == cli


# ---- 4. one-hot of every text column, and the columns it refuses ---------------------------------
def test_one_hot_alone_names_the_text_columns_it_encodes(penguin_model):
    _, result = penguin_model
    notes = [line for line in result.stderr.splitlines() if "one-hot" in line]
    assert len(notes) == 1
    table = penguins()
    for column in ("island", "sex"):
        assert f"{column} ({table[column].nunique()})" in notes[0]
    assert "species" not in notes[0]  # the target is no feature


def test_decimal_commas_are_refused_then_read_with_decimal_comma(files, tmp_path):
    common = ("train", "--dataset", files["cars_comma"], "--target", "Origin", "--drop", "Name", "Year",
              "--one-hot", "--impute", "mean", "--standardize", "--epochs", "2", "--quiet")
    message = refused(*common)
    assert "decimal comma" in message and "--decimal ," in message
    model_path = tmp_path / "m.npz"
    run(*common, "--decimal", ",", "--save", model_path)
    model = nx.load(model_path, device="cpu")
    numbers = [c for c in cars().columns if c not in ("Name", "Year", "Origin")]
    assert model.feature_names == numbers and model.layer_sizes[0] == len(numbers)
    # "18,0" was read as 18.0: the same predictions as the table written with points.
    dotted = cars()[numbers]
    comma = [row["prediction"] for row in _predict_csv(model_path, files["cars_comma"], tmp_path / "out.csv",
                                                       "--delimiter", ";")]
    library = model.predict(dotted)
    clear = _clear(nx.to_numpy(model.predict_proba(dotted)))
    assert np.asarray(comma)[clear].tolist() == library[clear].tolist()


def test_dates_and_many_categories_are_refused_with_the_option_to_use(files, tmp_path):
    common = ("train", "--dataset", files["cars"], "--target", "Origin", "--one-hot", "--impute", "mean",
              "--epochs", "2", "--quiet")
    message = refused(*common, "--drop", "Name")
    assert "'Year'" in message and "dates" in message and "--drop Year" in message
    n_names = cars()["Name"].nunique()
    assert n_names > 100
    message = refused(*common, "--drop", "Year")
    assert "'Name'" in message and f"{n_names} categories" in message and "--max-categories" in message
    model_path = tmp_path / "m.npz"
    run(*common, "--drop", "Year", "Name", "--save", model_path)
    assert nx.load(model_path, device="cpu").feature_names == [
        c for c in cars().columns if c not in ("Name", "Year", "Origin")]
    run(*common, "--drop", "Year", "--max-categories", str(n_names), "--save", model_path)
    model = nx.load(model_path, device="cpu")
    assert len(model.preprocessor.encoding["one_hot"]["Name"]) == n_names
    assert model.layer_sizes[0] == n_names + len(cars().columns) - 3  # Name's categories, the 6 numbers


# ---- 5. evaluate --held-out on the training file -------------------------------------------------
@pytest.mark.parametrize("impute", ["mean", "drop"])
def test_held_out_scores_integer_regression_targets_as_training_did(files, tmp_path, impute):
    model_path = tmp_path / "m.npz"
    trained = run("train", "--dataset", files["cars"], "--target", "Weight_in_lbs", "--task", "regression",
                  "--drop", "Name", "Year", "--one-hot", "--impute", impute, "--standardize", "--test-size", "0.25",
                  "--epochs", "3", "--quiet", "--save", model_path)
    if impute == "drop":
        n_missing = int(cars()[["Miles_per_Gallon", "Horsepower"]].isna().any(axis=1).sum())
        assert f"dropped {n_missing} of {len(cars())} rows" in trained.stderr
    evaluated = run("evaluate", model_path, files["cars"], "--held-out")
    expected, got = _test_line(trained.stdout), _test_line(evaluated.stdout)
    assert list(got) == list(expected) and "r2" in got
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-4), name
    every_row = _test_line(run("evaluate", model_path, files["cars"]).stdout)
    assert every_row["mse"] != pytest.approx(expected["mse"], rel=1e-3)  # the held-out rows, not all rows


# ---- 6. --resume on a table ---------------------------------------------------------------------
def test_resume_reuses_the_pipeline_and_refuses_what_would_change_it(penguin_model, files, tmp_path):
    first_path, _ = penguin_model
    resumed_path = tmp_path / "resumed.npz"
    result = run("train", "--dataset", files["penguins"], "--resume", first_path, "--epochs", "2", "--quiet",
                 "--save", resumed_path)
    assert "test: " in result.stdout  # the stored split's test rows, without --test-size again
    first, resumed = nx.load(first_path, device="cpu"), nx.load(resumed_path, device="cpu")
    assert resumed.target == "species" and resumed.classes == first.classes
    assert resumed.feature_names == first.feature_names
    assert resumed.preprocessor.to_dict() == first.preprocessor.to_dict()
    assert resumed.split == first.split and len(resumed.history) == len(first.history) + 2
    assert any(not np.array_equal(a, b) for a, b in zip(first.parameters(), resumed.parameters()))

    again = ("train", "--dataset", files["penguins"], "--resume", first_path, "--epochs", "1", "--quiet")
    assert "--impute median differs" in refused(*again, "--impute", "median")
    assert "--dtype float64 differs" in refused(*again, "--dtype", "float64")
    assert "--activation tanh differs" in refused(*again, "--activation", "tanh")
    renamed = penguins().replace({"species": {"Adelie": "Pygoscelis adeliae"}})
    renamed.to_csv(tmp_path / "renamed.csv", index=False)
    message = refused("train", "--dataset", tmp_path / "renamed.csv", "--resume", first_path, "--epochs", "1")
    assert "classes" in message and "Pygoscelis adeliae" in message and "Adelie" in message


def test_resume_after_impute_drop_finds_the_same_rows_and_split(files, tmp_path):
    first, resumed = tmp_path / "first.npz", tmp_path / "resumed.npz"
    run("train", "--dataset", files["penguins"], "--target", "species", "--one-hot", "--impute", "drop",
        "--standardize", "--test-size", "0.2", "--epochs", "2", "--quiet", "--save", first)
    result = run("train", "--dataset", files["penguins"], "--resume", first, "--epochs", "2", "--quiet",
                 "--save", resumed)
    assert "new split" not in result.stderr
    assert nx.load(resumed, device="cpu").split == nx.load(first, device="cpu").split
    held_out = _test_line(run("evaluate", resumed, files["penguins"], "--held-out").stdout)
    assert held_out["accuracy"] == pytest.approx(_test_line(result.stdout)["accuracy"], abs=1e-4)


def test_resume_refuses_to_drop_a_column_the_model_reads(penguin_model, files, tmp_path):
    model_path, _ = penguin_model
    message = refused("train", "--dataset", files["penguins"], "--resume", model_path, "--drop", "year",
                      "--epochs", "1")
    assert "--drop year" in message and "feature" in message
    # Dropping again what the model never read agrees with it.
    without_year = tmp_path / "without_year.npz"
    common = ("train", "--dataset", files["penguins"], "--drop", "year", "--epochs", "1", "--quiet")
    run(*common, "--target", "species", "--one-hot", "--impute", "mean", "--save", without_year)
    run(*common, "--resume", without_year, "--save", without_year)
    assert "year" not in nx.load(without_year, device="cpu").feature_names


# ---- 7. imputation from the training rows only -------------------------------------------------------
def test_imputed_values_come_from_the_training_rows_only(penguin_model):
    from nn_xp.data.tabular import split_rows

    model_path, _ = penguin_model
    model = nx.load(model_path, device="cpu")
    table = penguins()
    codes = model.preprocessor.encode_target(table["species"])
    train_rows, _, test_rows = split_rows(model.split, codes, stratify=True)
    assert len(test_rows) == round(0.2 * len(table))
    for column in PENGUIN_NUMBERS:
        stored = model.preprocessor.encoding["impute"][column]
        on_training_rows = float(np.nanmean(table[column].to_numpy()[train_rows]))
        assert stored == pytest.approx(on_training_rows, rel=1e-12)
        assert stored != pytest.approx(float(np.nanmean(table[column])), rel=1e-9)  # not every row's mean


# ---- 8. what the target means --------------------------------------------------------------------
def test_one_class_targets_are_refused_and_integer_targets_say_their_task(files, tmp_path):
    penguins()[lambda t: t["species"] == "Adelie"].to_csv(tmp_path / "adelie.csv", index=False)
    message = refused("train", "--dataset", tmp_path / "adelie.csv", "--target", "species", "--one-hot",
                      "--impute", "mean", "--epochs", "1")
    assert "one class" in message and "Adelie" in message

    common = ("train", "--dataset", files["cars"], "--target", "Weight_in_lbs", "--drop", "Name", "Year",
              "--one-hot", "--impute", "mean", "--standardize", "--epochs", "1", "--quiet")
    n_weights = cars()["Weight_in_lbs"].nunique()
    regression = run(*common, "--save", tmp_path / "r.npz")
    notes = [line for line in regression.stderr.splitlines() if "distinct whole numbers" in line]
    assert len(notes) == 1 and f"{n_weights} distinct" in notes[0]
    assert "regression" in notes[0] and "--task classification" in notes[0]
    assert not nx.load(tmp_path / "r.npz", device="cpu").is_classifier

    classified = run(*common, "--task", "classification", "--save", tmp_path / "c.npz")
    assert "distinct whole numbers" not in classified.stderr
    model = nx.load(tmp_path / "c.npz", device="cpu")
    assert model.is_classifier and model.classes == sorted(set(cars()["Weight_in_lbs"].tolist()))
    assert model.layer_sizes[-1] == n_weights
    predicted = model.predict(cars())
    assert set(predicted.tolist()) <= set(model.classes)


# ---- 9. names that would repeat ------------------------------------------------------------------------
def test_a_one_hot_column_clashing_with_a_column_name_is_refused(tmp_path):
    table = penguins().dropna()
    table = table.assign(color=np.where(table["island"] == "Dream", "red", "blue"),
                         **{"color=red": table["bill_depth_mm"]})[["color", "color=red", "body_mass_g", "species"]]
    table.to_csv(tmp_path / "clash.csv", index=False)
    message = refused("train", "--dataset", tmp_path / "clash.csv", "--target", "species", "--one-hot",
                      "--epochs", "1")
    assert "'color=red'" in message and "more than once" in message
    model = nx.MLP([3, 4, 3], output_activation="softmax", device="cpu", seed=0)
    with pytest.raises(ValueError, match="'color=red' appears more than once"):
        model.fit(table.drop(columns=["species"]), table["species"], one_hot=True, epochs=1, verbose=0)


def _edited(path, out, change):
    """The model file at `path` with its metadata edited by `change(meta)`, written to `out`."""
    with np.load(path, allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}
    meta = json.loads(bytes(members.pop("meta")))
    change(meta)
    members["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(out, "wb") as handle:
        np.savez(handle, **members)
    return out


def test_a_model_file_with_repeated_feature_or_class_names_is_refused(penguin_model, tmp_path):
    model_path, _ = penguin_model
    nx.load(model_path, device="cpu")  # the file as written loads

    def repeat_a_column(meta):
        columns = meta["preprocessing"]["encoding"]["columns"]
        columns[columns.index("bill_depth_mm")] = "bill_length_mm"

    def repeat_a_class(meta):
        classes = meta["schema"]["classes"]
        classes[1] = classes[0]

    for change, words in ((repeat_a_column, "'bill_length_mm' appears more than once"),
                          (repeat_a_class, "appears more than once")):
        bad = _edited(model_path, tmp_path / f"{change.__name__}.npz", change)
        with pytest.raises(ValueError, match=words):
            nx.load(bad, device="cpu")
        assert words in refused("predict", bad, "rows.csv")


# ---- 10. --hidden ---------------------------------------------------------------------------------------
def test_hidden_sizes_sit_between_the_encoded_features_and_the_classes(penguin_model):
    model_path, _ = penguin_model
    model = nx.load(model_path, device="cpu")
    table = penguins()
    features = table.drop(columns=["species"])
    text = [c for c in features.columns if features[c].dtype.kind not in "biuf"]
    n_encoded = sum(features[c].nunique() for c in text) + features.shape[1] - len(text)
    assert model.layer_sizes == [n_encoded, 16, 8, table["species"].nunique()]
    assert len(model.preprocessor.feature_names_out) == n_encoded

