"""The network: layers (`layers.py`: Dense, Dropout, Activation, BatchNorm, LayerNorm, your own),
their activations and initializers, the output heads (`heads.py`: output activation + loss),
`philox.py` (the dropout masks' generator), `sequential.py` (Sequential: the forward/backward loop,
state dicts), `mlp.py` (MLP and `nx.load`), `gradcheck.py`."""
