"""The data, in NumPy (and pandas/pyarrow for tables), below the models:

- `datasets.py`: `nx.datasets`, datasets by name or path, and the loaders below it gathered;
- `dataset.py`: the `Dataset` record every loader returns;
- `builtin.py`: the seeded generators and scikit-learn's bundled sets;
- `readers.py`: the user's files (CSV/TSV, parquet, .npy, .npz) and `encode`;
- `scaling.py`: standardisation; `splitting.py`: the train/test split;
- `preprocessing.py`: `nx.Preprocessor`, the input pipeline a model owns;
- `columns.py`: a table's columns as numbers (the encoding engine); `labels.py`: class labels;
- `tabular.py`: how the command line finds a file's table, target, weights and split."""
