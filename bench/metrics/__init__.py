"""Metrics, one file per family, registered in ``bench.registry.METRICS``.

Each import below registers metrics; add a metric by writing one file and one line here.
"""
