"""Fine-tuning methods, one file each, registered in ``bench.registry.METHODS``.

Each import below registers one method; add a method by writing one file and one line here.
"""
from bench.methods import adapter, full, lora, top_k  # noqa: F401  (engineer M2)
from bench.methods import embedding_only, infix, prefix  # noqa: F401  (engineer M1)
