"""The network's math: layers (`layers.py`: Dense, Dropout, Activation, BatchNorm, LayerNorm, your
own), their activations and initializers, the output heads (`heads.py`: output activation + loss),
`philox.py` (the dropout masks' generator), `network.py` (Network: the parameter store, the
forward/backward loop, the training step), `gradcheck.py`. It imports only backends/, validation and
itself; the user's models (Sequential, MLP) are in `nn_xp.models`."""
