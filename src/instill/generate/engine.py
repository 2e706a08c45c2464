"""Batched generation with the training renderer: stop at end-of-turn, record whether it did.

Prompts are built by `Renderer.encode_prompt`, the same code that builds training rows, so the
model sees at inference exactly the token prefix it was trained on. `Generator` is what eval,
quickstart and the training loop's samples call; it decodes through `DecodeEngine`
(stream.py), the one decoding loop that chat and serve use too, so every command answers a
prompt the same way (greedy answers equal `model.generate`'s, a test checks it). Each answer
records whether it *stopped*: whether the model emitted an end-of-turn token within the
budget, which is what a tuned model must learn to do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from instill.data.conversation import Message
from instill.data.masking import Renderer


@dataclass(frozen=True)
class SamplingConfig:
    """How to decode: greedy by default, or seeded sampling."""

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8


@dataclass
class Generation:
    """One answer."""

    text: str  # decoded up to (not including) the end-of-turn token
    token_ids: list[int]  # generated ids, end-of-turn included when it came
    stopped: bool  # an end-of-turn token came within the budget
    prompt_tokens: int


class Generator:
    """Answers conversations with a causal LM and the renderer it was trained with.

    A front for `DecodeEngine` (stream.py), the one decoding loop: prompts are rendered with
    the training renderer, sorted by length (less padding) and decoded `batch_size` rows at a
    time; a row that finishes hands its place to the next prompt at the next step (continuous
    batching), so one long answer does not hold up a batch of short ones. Greedy by default;
    with `do_sample` each prompt draws from its own generator seeded `seed + its index`, so an
    answer does not depend on the batch it landed in.

    Args:
        model: a causal LM (plain or PEFT), in eval mode.
        renderer: the training renderer (tokenizer + template).
        stop_ids: token ids that end an answer (the template's end-of-turn, the EOS).
        packed_linears: the engine's oneDNN linears on CPU ("auto", True, False).
    """

    def __init__(
        self,
        model,
        renderer: Renderer,
        stop_ids: Sequence[int],
        packed_linears: bool | str = "auto",
    ) -> None:
        from instill.generate.stream import DecodeEngine

        self.model = model
        self.renderer = renderer
        self.tokenizer = renderer.tokenizer
        self.engine = DecodeEngine(model, renderer.tokenizer, stop_ids, packed_linears)
        self.stop_ids = list(self.engine.stop_ids)

    @classmethod
    def for_bundle(cls, bundle) -> Generator:
        """The generator of an inference bundle (`instill.models.bundle.Bundle`)."""
        return cls(bundle.model, bundle.renderer, bundle.stop_ids)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        return self.renderer.encode_prompt(messages)

    @torch.no_grad()
    def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        sampling: SamplingConfig | None = None,
        on_batch: Callable[[int], None] | None = None,
        budgets: Sequence[int | None] | None = None,
    ) -> list[Generation]:
        """Answer each conversation (its last message must be the user's), in input order.

        `on_batch`, if given, is called with 1 as each answer finishes (progress bars).
        `budgets`, if given, is each conversation's own `max_new_tokens` (None: the sampling
        config's); short and long answers still share the running batch.
        """
        from instill.generate.stream import DecodeRequest

        sampling = sampling or SamplingConfig()
        prompts = [self.prompt_ids(c) for c in conversations]
        if budgets is not None and len(budgets) != len(prompts):
            raise ValueError(f"{len(budgets)} budgets for {len(prompts)} conversations")
        limits = [
            (b if b is not None else sampling.max_new_tokens)
            for b in (budgets if budgets is not None else [None] * len(prompts))
        ]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        requests = [
            DecodeRequest(
                prompt_ids=prompts[i],
                max_new_tokens=limits[i],
                temperature=sampling.temperature if sampling.do_sample else 0.0,
                top_p=sampling.top_p if sampling.do_sample else 1.0,
                seed=sampling.seed + i if sampling.do_sample else None,
            )
            for i in order
        ]
        done = (lambda _i, _c: on_batch(1)) if on_batch is not None else None
        completions = self.engine.run(requests, max_batch=sampling.batch_size, on_done=done)
        results: list[Generation | None] = [None] * len(prompts)
        for i, c in zip(order, completions, strict=True):
            stopped = bool(c.token_ids) and c.token_ids[-1] in self.stop_ids
            text_ids = c.token_ids[:-1] if stopped else c.token_ids
            results[i] = Generation(
                text=self.tokenizer.decode(text_ids, skip_special_tokens=True),
                token_ids=c.token_ids,
                stopped=stopped,
                prompt_tokens=c.prompt_tokens,
            )
        return [r for r in results if r is not None]
