#!/usr/bin/env bash
# GPU check (issue #12): one training step of every registered method and a short beam decode
# on CUDA, with the tiny random GPT-2 / Llama / BART and with the embedded SmolLM2-135M, in fp32
# and bf16 (autocast, as train.precision: bf16 does). For each: checks that every parameter and
# buffer is on the GPU, the loss is finite, a trained parameter moved and got a gradient on the
# GPU, the decode returns one string per source; prints the step time and the peak memory the
# step added above the loaded model (torch.cuda.max_memory_allocated after a reset).
# Exits 2 where no CUDA device is visible, 1 on any failure, 0 when every check passed.
# Under 8 minutes on one GPU (most of it loading SmolLM2-135M and first CUDA kernels).
#
#   benchmarks/gpu_check.sh                 # on a machine with a GPU, from the repository root
#   benchmarks/gpu_check.sh --cpu-dry-run   # the same checks on CPU, tiny models only: tests
#                                           # this script, says nothing about a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "$PY" - "$@" <<'EOF'
import copy
import sys
import time

try:
    import torch
except ModuleNotFoundError:
    print(f"gpu_check: torch is not installed for {sys.executable}; set PYTHON=path/to/venv/bin/python", file=sys.stderr)
    sys.exit(2)

DRY = "--cpu-dry-run" in sys.argv[1:]
if not DRY and not torch.cuda.is_available():
    print(f"gpu_check: no CUDA device visible to torch {torch.__version__} (built for CUDA "
          f"{torch.version.cuda}); run it on a GPU machine, or --cpu-dry-run to test the script",
          file=sys.stderr)
    sys.exit(2)

from bench.config import DecodeConfig  # noqa: E402
from bench.decode import decode  # noqa: E402
from bench.errors import BenchError  # noqa: E402
from bench.formatting import collate_train, encode  # noqa: E402
from bench.interfaces import EvalItem  # noqa: E402
from bench.models import load_model  # noqa: E402
from bench.registry import METHODS  # noqa: E402
from bench.train import MemoryPeak, autocast, forward_loss  # noqa: E402

device = torch.device("cpu" if DRY else "cuda")
if not DRY:
    print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"bf16 supported: {torch.cuda.is_bf16_supported()}")
MODELS = ["tiny-gpt2", "tiny-llama", "tiny-bart"] + ([] if DRY else ["smollm2-135m"])
PRECISIONS = ["fp32", "bf16"]
TINY_CONFIG = {"top_k": {"k": 1}, "adapter": {"bottleneck": 3}, "infix": {"length": 4, "mlp_width": 16}}
PAIRS = [("name[The Eagle] food[French] area[riverside]", "The Eagle serves French food by the river."),
         ("name[Alimentum] priceRange[cheap]", "Alimentum is a cheap place."),
         ("name[Zizzi] customer rating[5 out of 5] near[The Bakers]", "Zizzi, near The Bakers, is rated 5 out of 5."),
         ("name[Cotto] eatType[coffee shop]", "Cotto is a coffee shop.")]

failures: list[str] = []


def on_device(module: torch.nn.Module) -> list[str]:
    return [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.device.type != device.type]


print(f"{'model':<14} {'method':<15} {'prec':<5} {'step (s)':>9} {'above model (MiB)':>18} {'decode (s)':>10}  status")
for model_name in MODELS:
    t0 = time.perf_counter()
    lm = load_model(model_name)
    print(f"# {model_name} loaded in {time.perf_counter() - t0:.1f}s")
    items = [EvalItem(f"s{i}", src, (tgt,), {}) for i, (src, tgt) in enumerate(PAIRS)]
    encoded = [encode(lm.tokenizer, s, t, is_encoder_decoder=lm.is_encoder_decoder, max_source_tokens=64,
                      max_target_tokens=32) for s, t in PAIRS]
    cpu_batch = collate_train(encoded, pad_id=lm.tokenizer.pad_token_id, is_encoder_decoder=lm.is_encoder_decoder,
                              decoder_start_id=getattr(lm.model.config, "decoder_start_token_id", None))
    for method in METHODS.names():
        for precision in PRECISIONS:
            label = f"{model_name:<14} {method:<15} {precision:<5}"
            try:
                m = METHODS.get(method)()
                raw = TINY_CONFIG.get(method, {}) if model_name.startswith("tiny") else {}
                cfg = m.Config(**raw) if getattr(m, "Config", None) else dict(raw)
                torch.manual_seed(0)
                try:
                    tuned = m.apply(copy.deepcopy(lm.model), lm.tokenizer, cfg)
                except BenchError as e:  # e.g. LoRA's default q_proj/v_proj on GPT-2
                    print(f"{label} {'':>9} {'':>18} {'':>10}  n/a ({str(e)[:80]})")
                    continue
                tuned = tuned.to(device)
                if off := on_device(tuned):
                    raise AssertionError(f"not on {device.type}: {off[:3]}")
                params = [p for _, p in tuned.trainable_parameters()]
                before = [p.detach().clone() for p in params]
                opt = torch.optim.AdamW(params, lr=1e-3)
                batch = {k: v.to(device) for k, v in cpu_batch.items()}
                tuned.train()
                with MemoryPeak(device) as mem:
                    ts = time.perf_counter()
                    with autocast(device, precision):
                        loss = forward_loss(tuned, batch, is_encoder_decoder=lm.is_encoder_decoder,
                                            reduction="sequence_sum")
                    loss.backward()
                    grads_ok = all(p.grad is not None and p.grad.device.type == device.type for p in params)
                    opt.step()
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    step_s = time.perf_counter() - ts
                if not torch.isfinite(loss):
                    raise AssertionError(f"non-finite loss {loss.item()}")
                if not grads_ok:
                    raise AssertionError("a trained parameter has no gradient on the device")
                if all(torch.equal(a, p.detach()) for a, p in zip(before, params)):
                    raise AssertionError("no trained parameter moved")
                tuned.eval()
                with autocast(device, precision):
                    hyps, dec_s = decode(tuned, lm.tokenizer, items, is_encoder_decoder=lm.is_encoder_decoder,
                                         cfg=DecodeConfig(beam_size=3, max_new_tokens=8, batch_size=4),
                                         max_source_tokens=64, progress=False)
                if len(hyps) != len(items) or not all(isinstance(h, str) for h in hyps):
                    raise AssertionError(f"decode returned {len(hyps)} outputs for {len(items)} sources")
                above = mem.above_model_mb
                print(f"{label} {step_s:>9.3f} {above if above is not None else float('nan'):>18.1f} "
                      f"{dec_s:>10.2f}  ok")
            except Exception as e:  # noqa: BLE001 - every failure is listed, then the exit status says it
                failures.append(f"{model_name} {method} {precision}: {type(e).__name__}: {str(e)[:200]}")
                print(f"{label} {'':>9} {'':>18} {'':>10}  FAIL {type(e).__name__}: {str(e)[:120]}")
    del lm
    if device.type == "cuda":
        torch.cuda.empty_cache()

if failures:
    print(f"gpu_check: {len(failures)} FAILED:", *failures, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"gpu_check: every check passed{' (CPU dry run: nothing about a GPU was checked)' if DRY else ''}")
EOF
