"""prefix-bench: a benchmark and ablation harness for lightweight fine-tuning of text generators.

Built around Li & Liang (2021), "Prefix-Tuning: Optimizing Continuous Prompts for Generation".
"""

__version__ = "0.1.0"

# Every stored artifact (spec.json, meta.json, *.parquet, trainable.safetensors) carries this.
SCHEMA_VERSION = 1
