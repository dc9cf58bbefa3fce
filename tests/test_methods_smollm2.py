"""Slow tier: one real optimizer step of every registered method on the embedded SmolLM2-135M.

A batch of 8 E2E-style pairs, 64 tokens each, in the shared training layout
(``bench.formatting``); AdamW at the paper's default lr (5e-5, no weight decay). Each method
gets its own copy of the model. Asserts a finite loss, that the method's parameters moved
and that the frozen ones did not.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import torch

from bench.errors import ModelUnavailableError
from bench.formatting import collate_train, encode, sequence_loss
from bench.models import load_model
from bench.registry import METHODS

pytestmark = pytest.mark.slow

FIELDS = (
    "name : {n} | eatType : coffee shop | food : {f} | priceRange : moderate | "
    "customer rating : 3 out of 5 | area : {a} | familyFriendly : yes | near : The Sorrento"
)
TARGET = (
    "{n} is a family-friendly coffee shop serving {f} food in the {a} area near The Sorrento. "
    "Prices are moderate and customers rate it 3 out of 5, so it is worth a visit."
)
ROWS = [
    (n, f, a)
    for n, f, a in zip(
        (
            "Aromi",
            "The Eagle",
            "Zizzi",
            "Cotto",
            "Giraffe",
            "Wildwood",
            "Alimentum",
            "Browns Cambridge",
        ),
        ("Italian", "French", "English", "Chinese", "Indian", "Japanese", "Fast food", "Thai"),
        ("riverside", "city centre") * 4,
    )
]


@pytest.fixture(scope="module")
def smollm2() -> Any:
    try:
        return load_model("smollm2-135m")
    except ModelUnavailableError as e:
        pytest.skip(f"embedded model unavailable: {e}")


def _batch(lm: Any) -> dict[str, torch.Tensor]:
    encoded = [
        encode(
            lm.tokenizer,
            FIELDS.format(n=n, f=f, a=a),
            TARGET.format(n=n, f=f, a=a),
            is_encoder_decoder=False,
            max_source_tokens=31,
            max_target_tokens=32,
        )
        for n, f, a in ROWS
    ]
    batch = collate_train(encoded, pad_id=lm.tokenizer.pad_token_id, is_encoder_decoder=False)
    assert tuple(batch["input_ids"].shape) == (8, 64)  # every row fills its budgets
    return batch


@pytest.mark.parametrize("method", [m for m in METHODS.names() if getattr(METHODS.get(m), "needs_training", True)])
def test_one_step_on_smollm2(method: str, smollm2: Any) -> None:
    started = time.perf_counter()
    model = copy.deepcopy(smollm2.model)
    m = METHODS.get(method)()
    tuned = m.apply(model, smollm2.tokenizer, m.Config())
    batch = _batch(smollm2)
    trainable = {n for n, _ in tuned.trainable_parameters()}
    assert trainable
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    opt = torch.optim.AdamW([p for _, p in tuned.trainable_parameters()], lr=5e-5, weight_decay=0.0)

    tuned.train()
    logits = tuned(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
    ).logits
    loss, n_tokens = sequence_loss(
        logits, batch["labels"], is_encoder_decoder=False, reduction="sequence_sum"
    )
    assert n_tokens == 8 * 32
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()

    moved = 0
    for n, p in tuned.named_parameters():
        if n in trainable:
            if not torch.equal(p, before[n]):
                moved += 1
        else:
            assert torch.equal(p, before[n]), f"frozen {n} moved"
    assert moved > 0, f"{method}: no trainable parameter moved"
    print(
        f"{method}: loss {loss.item():.3f}, trained {tuned.n_trained:,}, stored {tuned.n_stored:,}, "
        f"{moved}/{len(trainable)} tensors moved, {time.perf_counter() - started:.1f}s"
    )
