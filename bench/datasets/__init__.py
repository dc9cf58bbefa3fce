"""Datasets, one file each, registered in ``bench.registry.DATASETS``.

Each import below registers one dataset; add a dataset by writing one file and one line here.
"""
