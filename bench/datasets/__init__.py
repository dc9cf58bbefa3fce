"""Datasets, one file each, registered in ``bench.registry.DATASETS``.

Each import below registers one dataset; add a dataset by writing one file and one line here.
"""
from bench.datasets import synthetic_e2e  # noqa: F401
from bench.datasets import webnlg  # noqa: F401
from bench.datasets import dart  # noqa: F401
from bench.datasets import xsum  # noqa: F401
from bench.datasets import e2e  # noqa: F401
