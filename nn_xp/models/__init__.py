"""The user's models: `sequential.py` (Sequential: a network of layers with its input pipeline,
fit, predict, evaluate and files) and `mlp.py` (MLP, and `nx.load`, which reads any model file)."""
