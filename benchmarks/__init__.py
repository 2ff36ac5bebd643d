"""Training benchmarks: nn_xp against PyTorch eager, scikit-learn and the matmul floor, in one run.

Run `python -m benchmarks.run` (or `make bench`); see benchmarks/README.md.
"""
