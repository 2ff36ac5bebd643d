"""The README's code runs as written."""

import re
from pathlib import Path

import numpy as np

import nn_xp as nx

README = Path(__file__).resolve().parent.parent / "README.md"


def _block_after(marker: str) -> str:
    text = README.read_text()
    start = text.index(marker)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    return "\n".join(line[2:] if line.startswith("  ") else line for line in match.group(1).splitlines())


def test_the_notebook_loop_converges_as_written(capsys):
    namespace = {"np": np, "nx": nx}
    exec(_block_after("write the notebooks' loop yourself"), namespace)  # our own README
    assert namespace["loss"] < 5e-3
    assert float(capsys.readouterr().out) == namespace["loss"]


def test_the_custom_layer_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)
    from nn_xp.nn import layers

    namespace = {"X": X, "y": y}
    try:
        exec(_block_after("## Layers of your own"), namespace)  # our own README
    finally:
        layers.LAYERS.pop("scale", None)
    model = namespace["model"]
    assert nx.gradcheck(model, X[:8], y[:8]) < 1e-6
    assert (tmp_path / "scaled.npz").exists()


def test_the_table_example_runs_as_written(capsys):
    pytest = __import__("pytest")
    pytest.importorskip("palmerpenguins", reason="the table example reads palmerpenguins (the dev extra)")
    namespace = {"np": np, "nx": nx}
    exec(_block_after("- **Models that know their data.**"), namespace)  # our own README
    model, penguins = namespace["model"], namespace["penguins"]
    printed = capsys.readouterr().out
    assert all(name in model.classes for name in re.findall(r"'(\w+)'", printed))
    assert model.classes == ["Adelie", "Chinstrap", "Gentoo"] and "year" not in model.feature_names
    # The raw table, through the model's own pipeline: nearly every penguin is named right.
    assert np.mean(model.predict(penguins) == penguins["species"].to_numpy()) > 0.9


def test_the_array_library_examples_run_as_written(capsys):
    pytest = __import__("pytest")
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    namespace = {}
    exec(_block_after("## Any array library"), namespace)  # our own README: PyTorch
    pred, y = namespace["pred"], namespace["y"]
    assert isinstance(pred, torch.Tensor) and pred.dtype == torch.float32 and pred.device.type == "cpu"
    assert all(isinstance(p, torch.Tensor) for p in namespace["model"].parameters())
    assert float(((pred - y) ** 2).mean()) < 0.05  # it learned the sine
    assert capsys.readouterr().out.startswith("Tensor torch.float32 ")

    exec(_block_after("moves any array onto any device"), namespace)  # between the libraries
    assert isinstance(namespace["Xj"], jax.Array) and isinstance(namespace["Xt"], torch.Tensor)
    on_jax = namespace["on_jax"]  # the torch model's copy
    assert nx.backends.device_of(on_jax.parameters()[0]) == "jax:cpu"
    on_jax_pred = on_jax.predict(nx.to_device(namespace["X"], "jax:cpu"))
    assert np.allclose(nx.to_numpy(on_jax_pred), nx.to_numpy(pred), atol=1e-5)

    namespace = {}
    exec(_block_after("On JAX, and the same model"), namespace)  # JAX, and NumPy beside it
    assert isinstance(namespace["pred"], jax.Array) and namespace["pred"].dtype == "float32"
    assert float(capsys.readouterr().out) < 1e-4  # the same weights and steps as NumPy's, to float32 rounding
