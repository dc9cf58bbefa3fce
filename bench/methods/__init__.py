"""Fine-tuning methods, one file each, registered in ``bench.registry.METHODS``.

Each import below registers one method; add a method by writing one file and one line here.
"""
from bench.methods import (  # noqa: F401  (one module per component)
    adapter,
    embedding_only,
    full,
    infix,
    lora,
    none,
    peft_adapter,
    prefix,
    top_k,
)
