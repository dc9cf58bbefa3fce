"""Datasets, one file each, registered in ``bench.registry.DATASETS``.

Each import below registers one dataset; add a dataset by writing one file and one line here.
"""
from bench.datasets import (
    custom,  # noqa: F401  (one module per component)
    dart,  # noqa: F401  (one module per component)
    e2e,  # noqa: F401  (one module per component)
    synthetic_e2e,  # noqa: F401  (one module per component)
    webnlg,  # noqa: F401  (one module per component)
    xsum,  # noqa: F401  (one module per component)
)
