"""Batched generation with the training renderer: left padding, KV cache, stop at end-of-turn.

Prompts are built by `Renderer.encode_prompt`, the same code that builds training rows, so the
model sees at inference exactly the token prefix it was trained on. Batches are sorted by prompt
length (less padding) and left-padded; with the attention mask and per-row positions that
`model.generate` derives from it, a batched answer equals the answer generated alone (a test
checks this). Each answer records whether it *stopped*: whether the model emitted an end-of-turn
token within the budget, which is what a tuned model must learn to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


@contextmanager
def contiguous_lm_head_input(model) -> Iterator[None]:
    """Hand the LM head a contiguous input while generating.

    `generate` computes logits for the last position only, and the model slices that position
    out of the hidden states: a non-contiguous [batch, 1, hidden] view. On CPU (torch 2.13, bf16)
    `F.linear` on such a view is ~100x slower when the weight does not require grad, which is
    the case for every tuned model (PEFT freezes the base): 13 s instead of 0.04 s per call for
    Gemma 3's 262k-row LM head, which made evaluating a tuned model 2.6x slower than its base.
    """
    head = model.get_output_embeddings()
    if head is None:
        yield
        return
    handle = head.register_forward_pre_hook(
        lambda module, args: (args[0].contiguous(), *args[1:]) if args else None
    )
    try:
        yield
    finally:
        handle.remove()


@dataclass
class Generation:
    """One answer."""

    text: str  # decoded up to (not including) the end-of-turn token
    token_ids: list[int]  # generated ids, end-of-turn included when it came
    stopped: bool  # an end-of-turn token came within the budget
    prompt_tokens: int


class Generator:
    """Answers conversations with a causal LM and the renderer it was trained with.

    Args:
        model: a causal LM (plain or PEFT), in eval mode.
        renderer: the training renderer (tokenizer + template).
        stop_ids: token ids that end an answer (the template's end-of-turn, the EOS).
    """

    def __init__(self, model, renderer: Renderer, stop_ids: Sequence[int]) -> None:
        self.model = model
        self.renderer = renderer
        self.tokenizer = renderer.tokenizer
        self.stop_ids = list(dict.fromkeys(stop_ids))
        if not self.stop_ids:
            raise ValueError("generation needs at least one stop token id")
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.stop_ids[0]

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
    ) -> list[Generation]:
        """Answer each conversation (its last message must be the user's), in input order.

        `on_batch`, if given, is called with the number of answers of each finished batch.
        """
        sampling = sampling or SamplingConfig()
        prompts = [self.prompt_ids(c) for c in conversations]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        for start in range(0, len(order), sampling.batch_size):
            idx = order[start : start + sampling.batch_size]
            for i, gen in zip(idx, self._batch([prompts[i] for i in idx], sampling), strict=True):
                results[i] = gen
            if on_batch is not None:
                on_batch(len(idx))
        return [r for r in results if r is not None]

    def _batch(self, prompts: list[list[int]], sampling: SamplingConfig) -> list[Generation]:
        longest = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), longest), dtype=torch.long)
        for b, p in enumerate(prompts):  # left padding: answers start at the same column
            ids[b, longest - len(p) :] = torch.tensor(p)
            mask[b, longest - len(p) :] = 1
        kwargs = {}
        if sampling.do_sample:
            torch.manual_seed(sampling.seed)
            kwargs = {"temperature": sampling.temperature, "top_p": sampling.top_p}
        with contiguous_lm_head_input(self.model):
            out = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=sampling.max_new_tokens,
                do_sample=sampling.do_sample,
                eos_token_id=self.stop_ids,
                pad_token_id=self.pad_id,
                use_cache=True,
                **kwargs,
            )
        results = []
        for b, p in enumerate(prompts):
            new = out[b, longest:].tolist()
            stop_at = next((k for k, t in enumerate(new) if t in self.stop_ids), None)
            kept = new if stop_at is None else new[: stop_at + 1]
            text_ids = kept if stop_at is None else kept[:-1]
            results.append(
                Generation(
                    text=self.tokenizer.decode(text_ids, skip_special_tokens=True),
                    token_ids=kept,
                    stopped=stop_at is not None,
                    prompt_tokens=len(p),
                )
            )
        return results
