"""The data: datasets by name and user files (`datasets.py`, also `nx.datasets`), the input
pipeline a model owns (`preprocessing.py`, `nx.Preprocessor`), and how the command line finds a
file's table, target, weights and split (`tabular.py`)."""
