"""The one compiled piece of nn_xp: single-pass optimizer updates and ReLU layer passes for NumPy
(nn_xp/backends/_native.c).

It is optional: where no C compiler is found the build warns and goes on, and nn_xp runs the same
updates as whole-array NumPy operations (nn_xp/backends/numpy_ops.py says which one is in use).
"""

import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    flags = ["/O2", "/fp:precise"]
else:
    # No fused multiply-add, so the loops round like NumPy; no errno from sqrt and no care for
    # floating-point exception flags (nothing reads them), so the loops vectorise.
    flags = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]

setup(ext_modules=[Extension("nn_xp.backends._native", ["nn_xp/backends/_native.c"], extra_compile_args=flags, optional=True)])
