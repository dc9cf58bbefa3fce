"""Mixed-task batches: one forward / one beam search over rows carrying different tasks'
prefixes (the paper's deployment claim, Section 4) equals serving each task alone."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from bench.errors import BenchError
from bench.methods.prefix import forward_mixed, generate_mixed
from bench.models import load_model
from bench.registry import METHODS

SOURCES = ["name : Aromi | food : Thai", "area : riverside", "name : Blue Spice", "food : English"]
TASK_OF_ROW = [2, 0, 1, 2]


def tasks_on_one_base(model: str, method: str, lengths: tuple[int, ...]) -> tuple[Any, list[Any]]:
    torch.manual_seed(0)
    lm = load_model(model, seed=0)
    m = METHODS.get(method)()
    tasks = []
    for length in lengths:
        cfg = (
            {"length": length}
            if method == "embedding_only"
            else {"length": length, "mlp_width": 16}
        )
        t = m.apply(lm.model, lm.tokenizer, m.Config(**cfg))
        with torch.no_grad():  # distinct, clearly non-trivial prefixes per task
            for _, p in t.trainable_parameters():
                p.add_(torch.randn_like(p) * 0.3)
        t.eval()
        tasks.append(t)
    return lm, tasks


def prompts(lm: Any) -> tuple[torch.Tensor, torch.Tensor]:
    tok = lm.tokenizer
    if lm.is_encoder_decoder:
        rows = [tok(s, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for s in SOURCES]
        n = max(map(len, rows))
        ids = [r + [tok.pad_token_id] * (n - len(r)) for r in rows]
        mask = [[1] * len(r) + [0] * (n - len(r)) for r in rows]
    else:
        rows = [
            tok(" " + s, add_special_tokens=False)["input_ids"] + [tok.bos_token_id]
            for s in SOURCES
        ]
        n = max(map(len, rows))
        ids = [[tok.pad_token_id] * (n - len(r)) + r for r in rows]
        mask = [[0] * (n - len(r)) + [1] * len(r) for r in rows]
    return torch.tensor(ids), torch.tensor(mask)


CASES = [
    ("tiny-gpt2", "prefix", (2, 3, 5)),
    ("tiny-gpt2", "prefix", (3, 3, 3)),
    ("tiny-llama", "prefix", (4, 2, 3)),
    ("tiny-bart", "prefix", (2, 5, 3)),
    ("tiny-gpt2", "infix", (2, 4, 3)),
    ("tiny-llama", "embedding_only", (3, 1, 2)),
]


@pytest.mark.parametrize("model,method,lengths", CASES)
def test_mixed_forward_equals_each_task_alone(
    model: str, method: str, lengths: tuple[int, ...]
) -> None:
    lm, tasks = tasks_on_one_base(model, method, lengths)
    ids, mask = prompts(lm)
    kw: dict[str, Any] = {}
    if lm.is_encoder_decoder:
        kw["decoder_input_ids"] = torch.tensor(
            [[lm.model.config.decoder_start_token_id, 70, 71]] * len(ids)
        )
    with torch.no_grad():
        mixed = forward_mixed(tasks, TASK_OF_ROW, ids, mask, **kw).logits
        alone = [t(input_ids=ids, attention_mask=mask, **kw).logits for t in tasks]
    for row, task in enumerate(TASK_OF_ROW):
        real = mask[row].bool() if not lm.is_encoder_decoder else slice(None)
        torch.testing.assert_close(mixed[row][real], alone[task][row][real], atol=1e-5, rtol=0)
        other = (task + 1) % len(tasks)  # and the rows really differ between tasks
        assert (mixed[row][real] - alone[other][row][real]).abs().max() > 1e-4


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("model,method,lengths", CASES)
def test_mixed_generation_equals_each_task_alone(
    model: str, method: str, lengths: tuple[int, ...], num_beams: int
) -> None:
    lm, tasks = tasks_on_one_base(model, method, lengths)
    ids, mask = prompts(lm)
    kw = {
        "num_beams": num_beams,
        "max_new_tokens": 6,
        "do_sample": False,
        "eos_token_id": None,
        "pad_token_id": lm.tokenizer.pad_token_id,
        "early_stopping": True,
    }
    mixed = generate_mixed(tasks, TASK_OF_ROW, ids, mask, **kw)
    for row, task in enumerate(TASK_OF_ROW):
        alone = tasks[task].generate(
            input_ids=ids[row : row + 1], attention_mask=mask[row : row + 1], **kw
        )
        assert torch.equal(mixed[row], alone[0]), f"row {row} (task {task})"


def test_mixing_needs_one_base_and_valid_rows() -> None:
    lm, tasks = tasks_on_one_base("tiny-gpt2", "prefix", (2, 3))
    _, other = tasks_on_one_base("tiny-gpt2", "prefix", (2,))
    ids, mask = prompts(lm)
    with pytest.raises(BenchError, match="same base model object"):
        generate_mixed([tasks[0], other[0]], [0, 1, 0, 1], ids, mask, max_new_tokens=1)
    with pytest.raises(BenchError, match=r"task_of_row must be in \[0, 2\)"):
        forward_mixed(tasks, [0, 1, 2, 0], ids, mask)
    with pytest.raises(BenchError, match="task_of_row has shape"):
        forward_mixed(tasks, [0, 1], ids, mask)
    bart, bart_tasks = tasks_on_one_base("tiny-bart", "embedding_only", (2, 2))
    with pytest.raises(BenchError, match="encoder's input"):
        forward_mixed(bart_tasks, [0, 1, 0, 1], *prompts(bart))
