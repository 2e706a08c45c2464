"""Step-wise decoding: a batch of requests answered together, one token per step, streamed.

The one decoding loop of instill: chat and serve stream from it, and `Generator` (engine.py,
what eval and quickstart call) runs it over a queue of prompts (`run(max_batch=...)`). It owns
the loop instead of calling `model.generate` because streaming, per-request limits, stop strings
and rows joining a running batch need each step:

* **One prefill, then one token per step**, with the model's KV cache (`past_key_values`). The
  batch is left-padded and positions are `cumsum(mask) - 1`, exactly as `generate` builds them,
  so a greedy answer here equals `model.generate`'s (a test checks it token for token). The prefill
  asks the model for the last position's logits only (`logits_to_keep=1`): with Gemma's 262k
  vocabulary, logits for every prompt position cost more than the forward itself.
* **Rows leave the batch when they finish** (`Cache.batch_select_indices`), so a long answer does
  not make the short ones' rows keep computing. Each request has its own budget, stop ids (added
  to the engine's end-of-turn / EOS ids), stop strings, temperature, top-p and seed: sampling
  draws from a per-request `torch.Generator`, so a seeded answer does not depend on what else is
  in the batch.
* **Rows join a running batch** (continuous batching, `stream(admit=...)`): at a step boundary
  new requests are prefilled alone (left-padded among themselves) and their KV cache is merged
  into the batch's (`merge_caches`: the side with fewer columns is left-padded, keys, values and
  mask, so no row's positions or column distances change; Gemma's sliding-window layers keep
  their last `window - 1` columns, padded the same way). A joined answer equals its offline one
  (a test checks it on the tiny Qwen, Gemma and Llama). A cache of any other kind is not merged:
  such a model decodes in waves.
* **Decode steps append to the KV cache in place** (kv_cache.py): the stock dynamic cache copies
  every layer's whole cache each step (`torch.cat`), 19% of a step's time at batch 16 on SmolLM2;
  the growing layers write into buffers with spare columns and hold the same values.
* **On CPU the linear layers run through oneDNN on weights reordered once** (packed_linear.py):
  at a decode step's few rows MKL's sgemm reaches a fraction of what oneDNN's blocked kernels do
  (2-3x slower on a large-vocabulary LM head). Same products up to summation order; skipped
  under grad or autocast, and when the reordered copies would not fit in memory.
* **Text is released only when it is safe** (`TextStream`): bytes of a character split across
  tokens are held until the character is complete (no U+FFFD in a stream), and text that could be
  the start of a stop string is held until it is known not to be one; a stop string matched
  across token boundaries is cut from the answer.

Requests in one batch share the model's weights: the caller picks the adapter for the whole
batch (`use_adapter`; by default the model runs as it was loaded). Mixed-adapter batches are not
formed; see server.py for why.
"""

from __future__ import annotations

import collections
import inspect
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from instill.generate.kv_cache import GROWING, grow_in_place
from instill.generate.packed_linear import PackedLinears
from instill.models.bundle import contiguous_lm_head_input

FINISH_REASONS = ("stop", "length", "cancelled")


@dataclass(frozen=True)
class DecodeRequest:
    """One prompt to answer and how.

    Attributes:
        prompt_ids: the rendered prompt (`Renderer.encode_prompt`).
        max_new_tokens: the budget of generated tokens (>= 1).
        temperature: 0 decodes greedily; above 0 samples.
        top_p: nucleus sampling mass (1.0 keeps every token).
        seed: the sampling seed (None: a random one).
        stop_ids: token ids that end this answer, on top of the engine's.
        stop_strings: strings that end the answer; cut from the text.
        cancelled: polled every step; True ends the answer (a client that went away).
    """

    prompt_ids: Sequence[int]
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    cancelled: Callable[[], bool] | None = None

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise ValueError("a decode request needs at least one prompt token")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class Delta:
    """What one step produced for one request."""

    index: int  # the request's position in the batch given to `stream`, then admitted ones
    text: str  # text released by this step (may be empty)
    token_id: int | None  # the token chosen this step (None when cancelled)
    finish_reason: str | None = None  # `stop`, `length` or `cancelled` once finished


@dataclass
class Completion:
    """A finished answer."""

    text: str
    token_ids: list[int] = field(default_factory=list)  # the end-of-turn id included if it came
    finish_reason: str = "length"
    prompt_tokens: int = 0

    @property
    def stopped(self) -> bool:
        """The answer ended by itself (a stop id or stop string), not by the budget."""
        return self.finish_reason == "stop"

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


class TextStream:
    """Incremental detokenisation with stop strings.

    Decoding every token alone breaks characters that span tokens and drops the spaces some
    tokenizers attach to the following token, so text is decoded over a window that starts one
    release back (`prefix`) and only the part after the window's known text is new; a window
    ending in U+FFFD waits for the next token.
    """

    def __init__(self, tokenizer, stop_strings: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""  # decoded so far (cut at a stop string once one matched)
        self.stop_strings = tuple(s for s in stop_strings if s)
        self.matched_stop = False
        self._prefix = 0  # window start (token index)
        self._read = 0  # tokens whose text is in `self.text`
        self._sent = 0  # characters of `self.text` released

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add a generated token; return the text that became safe to show."""
        self.ids.append(token_id)
        known = self._decode(self.ids[self._prefix : self._read])
        window = self._decode(self.ids[self._prefix :])
        if len(window) > len(known) and not window.endswith("\ufffd"):
            self.text += window[len(known) :]
            self._prefix, self._read = self._read, len(self.ids)
        return self._release(final=False)

    def finish(self) -> str:
        """The answer ended: decode what was held back and release the rest."""
        if self._read < len(self.ids):  # an incomplete character at the very end
            known = self._decode(self.ids[self._prefix : self._read])
            self.text += self._decode(self.ids[self._prefix :])[len(known) :]
            self._read = len(self.ids)
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        if self.matched_stop:
            return ""
        if self.stop_strings:
            # A match cannot start in released text: text that might begin one is held.
            hits = [p for s in self.stop_strings if (p := self.text.find(s, self._sent)) >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                self.matched_stop = final = True
        end = len(self.text) if final else len(self.text) - self._held_suffix()
        out = self.text[self._sent : end]
        self._sent = max(self._sent, end)
        return out

    def _held_suffix(self) -> int:
        """Length of the longest unreleased suffix that is a proper prefix of a stop string."""
        longest = max((len(s) for s in self.stop_strings), default=1) - 1
        for k in range(min(longest, len(self.text) - self._sent), 0, -1):
            tail = self.text[-k:]
            if any(s.startswith(tail) for s in self.stop_strings):
                return k
        return 0


NO_ADAPTER = ""  # `use_adapter` / `stream`: the base model with every adapter switched off


@contextmanager
def use_adapter(model, adapter: str | None) -> Iterator[None]:
    """Run with PEFT adapter `adapter` active, with none (`NO_ADAPTER`: the base), or with the
    model as it was loaded (None)."""
    if adapter is None:
        yield
        return
    if not hasattr(model, "peft_config"):
        if adapter != NO_ADAPTER:
            raise ValueError(f"adapter {adapter!r} requested but the model has no adapters")
        yield
        return
    if adapter == NO_ADAPTER:
        with model.disable_adapter():
            yield
        return
    if adapter not in model.peft_config:
        raise ValueError(f"unknown adapter {adapter!r}; loaded: {', '.join(model.peft_config)}")
    model.set_adapter(adapter)
    yield


class DecodeEngine:
    """Answers batches of `DecodeRequest`s step by step.

    Args:
        model: a causal LM (plain or PEFT), in eval mode.
        tokenizer: its tokenizer (for detokenisation and the pad id).
        stop_ids: ids that end every answer (the template's end-of-turn, the EOS).
        packed_linears: run the linear layers through oneDNN on CPU ("auto", True, False;
            packed_linear.py).
    """

    def __init__(
        self, model, tokenizer, stop_ids: Sequence[int], packed_linears: bool | str = "auto"
    ) -> None:
        self.model = model
        self.linears = PackedLinears(model, packed_linears)
        self.tokenizer = tokenizer
        self.stop_ids = tuple(dict.fromkeys(stop_ids))
        if not self.stop_ids:
            raise ValueError("decoding needs at least one stop token id")
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.stop_ids[0]
        self._mergeable: bool | None = None  # whether prefills can be grouped; known once tried

    def _cache_keyword(self) -> str:
        """The forward argument that takes the KV cache: `cache` in recent transformers (which
        deprecates `past_key_values`), `past_key_values` before."""
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        params = inspect.signature(base.forward).parameters
        return "cache" if "cache" in params else "past_key_values"

    @classmethod
    def for_bundle(cls, bundle) -> DecodeEngine:
        """The engine of an inference bundle (`instill.models.bundle.Bundle`)."""
        return cls(bundle.model, bundle.tokenizer, bundle.stop_ids)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def run(
        self,
        requests: Sequence[DecodeRequest],
        adapter: str | None = None,
        max_batch: int | None = None,
        on_done: Callable[[int, Completion], None] | None = None,
    ) -> list[Completion]:
        """Answer every request and return the finished answers in input order.

        At most `max_batch` rows decode at once (default: all). Requests are taken in the order
        given: a row that finishes is replaced by the next waiting request at the next step
        (continuous batching), or, for a model whose cache cannot be merged, the next batch
        starts when this one ends. `on_done(index, completion)` is called as each answer
        finishes.
        """
        n = len(requests)
        max_batch = max(1, max_batch or n)
        texts = [""] * n
        ids: list[list[int]] = [[] for _ in requests]
        reasons = ["length"] * n
        pending = collections.deque(range(n))
        while pending:
            slots = [pending.popleft() for _ in range(min(max_batch, len(pending)))]

            def admit(running: int, slots: list[int] = slots) -> list[DecodeRequest]:
                joined = [pending.popleft() for _ in range(min(max_batch - running, len(pending)))]
                slots.extend(joined)  # stream indices continue after the first batch
                return [requests[i] for i in joined]

            for deltas in self.stream([requests[i] for i in slots], adapter, admit=admit):
                for d in deltas:
                    i = slots[d.index]
                    texts[i] += d.text
                    if d.token_id is not None:
                        ids[i].append(d.token_id)
                    if d.finish_reason is not None:
                        reasons[i] = d.finish_reason
                        if on_done is not None:
                            on_done(i, self._completion(requests[i], texts[i], ids[i], reasons[i]))
        return [
            self._completion(r, t, i, f)
            for t, i, f, r in zip(texts, ids, reasons, requests, strict=True)
        ]

    @staticmethod
    def _completion(request: DecodeRequest, text: str, ids: list[int], reason: str) -> Completion:
        return Completion(text, list(ids), reason, len(request.prompt_ids))

    @torch.no_grad()
    def stream(
        self,
        requests: Sequence[DecodeRequest],
        adapter: str | None = None,
        admit: Callable[[int], Sequence[DecodeRequest]] | None = None,
    ) -> Iterator[list[Delta]]:
        """Decode the batch; yield each step's deltas (one per request still running).

        Every request gets exactly one delta with a `finish_reason`, its last.

        `admit` (continuous batching): called at each step boundary with the number of rows
        still running; the requests it returns join the batch (same adapter) and get indices
        after every earlier request, in order. They are prefilled alone, then their KV cache is
        merged into the batch's (`merge_caches`), so each answer stays the one it gets alone. For
        a cache that cannot be merged (not a `DynamicCache` of full / sliding-window layers)
        `admit` is never called: the batch runs to its end as one wave.
        """
        if not requests:
            return
        with (
            use_adapter(self.model, adapter),
            contiguous_lm_head_input(self.model),
            self.linears.active(),
        ):
            yield from self._stream(list(requests), admit)

    def _prefill(self, prompts: list[list[int]]):
        """Prefill `prompts`: (cache, mask, last positions, last logits), rows in input order.

        Prompts of very different lengths are prefilled in groups of similar length
        (`length_groups`) whose caches are then merged (`merge_caches`), so a short prompt is not
        padded to the longest: on 32 instructions of 41-196 tokens the padded prefills of one run
        computed 62% more positions than the prompts have. Answers are unchanged: a merged cache
        is what the joins of continuous batching already use. A model whose cache cannot be
        merged is prefilled in one padded batch (learnt at its first grouped prefill).
        """
        groups = length_groups([len(p) for p in prompts]) if self._mergeable is not False else []
        if len(groups) <= 1:
            return self._prefill_padded(prompts)
        cache, mask, last_pos, logits = self._prefill_padded([prompts[i] for i in groups[0]])
        self._mergeable = mergeable(cache)
        if not self._mergeable:
            return self._prefill_padded(prompts)
        for group in groups[1:]:
            other, other_mask, pos, more = self._prefill_padded([prompts[i] for i in group])
            mask = merge_caches(cache, mask, other, other_mask)
            last_pos, logits = torch.cat([last_pos, pos]), torch.cat([logits, more])
        order = torch.tensor([i for g in groups for i in g], device=mask.device)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        cache.batch_select_indices(inverse)
        return cache, mask[inverse], last_pos[inverse], logits[inverse]

    def _prefill_padded(self, prompts: list[list[int]]):
        """One forward over left-padded `prompts`: (cache, mask, last positions, last logits)."""
        device = self.device
        longest = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), longest), dtype=torch.long)
        for b, p in enumerate(prompts):  # left padding: answers start at the same column
            ids[b, longest - len(p) :] = torch.tensor(p)
            mask[b, longest - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as `generate` builds them
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = _cache_of(out)
        grow_in_place(cache)  # decode steps append in place instead of copying the cache
        return cache, mask, positions[:, -1], out.logits[:, -1, :].float()

    def _stream(
        self,
        requests: list[DecodeRequest],
        admit: Callable[[int], Sequence[DecodeRequest]] | None = None,
    ) -> Iterator[list[Delta]]:
        """The loop: choose each live row's token, emit it, admit arrivals, one decode step.

        Arrivals are prefilled *before* the step of the running rows and their first token is
        emitted at once, so a request's time to first token is the rest of the running step
        plus its own prefill, not also a whole decode step of the batch.
        """
        device = self.device
        cache, mask, last_pos, logits = self._prefill([list(r.prompt_ids) for r in requests])
        cache_keyword = self._cache_keyword()
        if admit is not None and not mergeable(cache):
            admit = None  # this model's cache cannot be merged: one wave
        state = _Rows(self, requests)
        live = list(range(len(requests)))  # batch row -> request index
        tokens: list[int] = []
        while True:
            if live:  # `logits` holds one row per live request
                tokens = self._choose(
                    logits, [requests[i] for i in live], state.generators_of(live)
                )
                deltas, keep = state.advance(live, tokens)
                yield deltas
                if len(keep) < len(live):  # finished rows leave the batch and the cache
                    index = torch.tensor(keep, device=device, dtype=torch.long)
                    if keep:
                        cache.batch_select_indices(index)
                    mask, last_pos = mask[index], last_pos[index]
                    live, tokens = [live[row] for row in keep], [tokens[row] for row in keep]
            joining = list(admit(len(live))) if admit is not None else []
            if joining:
                new_cache, new_mask, new_pos, new_logits = self._prefill(
                    [list(r.prompt_ids) for r in joining]
                )
                joined = state.add(joining)
                first = self._choose(new_logits, joining, state.generators_of(joined))
                deltas, keep = state.advance(joined, first)
                yield deltas  # the arrivals' first tokens, before the batch's next step
                if keep:
                    if len(keep) < len(joined):
                        index = torch.tensor(keep, device=device, dtype=torch.long)
                        new_cache.batch_select_indices(index)
                        new_mask, new_pos = new_mask[index], new_pos[index]
                    if live:
                        mask = merge_caches(cache, mask, new_cache, new_mask)
                        last_pos = torch.cat([last_pos, new_pos])
                    else:
                        cache, mask, last_pos = new_cache, new_mask, new_pos
                    live += [joined[row] for row in keep]
                    tokens += [first[row] for row in keep]
            if not live:
                if joining:
                    continue  # every arrival finished at its first token: admit again
                return
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
            last_pos = last_pos + 1
            out = self.model(
                input_ids=torch.tensor(tokens, device=device)[:, None],
                attention_mask=mask,
                position_ids=last_pos[:, None],
                use_cache=True,
                **{cache_keyword: cache},
            )
            cache = _cache_of(out)
            logits = out.logits[:, -1, :].float()

    @staticmethod
    def _generator(request: DecodeRequest, device: torch.device) -> torch.Generator | None:
        if request.temperature == 0:
            return None
        seed = request.seed if request.seed is not None else random.getrandbits(63)
        return torch.Generator(device=device).manual_seed(seed)

    @staticmethod
    def _choose(
        logits: torch.Tensor,
        requests: list[DecodeRequest],
        generators: list[torch.Generator | None],
    ) -> list[int]:
        """The next token of each row: argmax for greedy rows, a seeded draw for the others."""
        chosen = logits.argmax(dim=-1).tolist()  # [live]
        for row, (r, gen) in enumerate(zip(requests, generators, strict=True)):
            if gen is None:
                continue
            probs = torch.softmax(logits[row] / r.temperature, dim=-1)  # [vocab]
            if r.top_p < 1.0:
                sorted_probs, order = probs.sort(descending=True)
                # Keep the smallest prefix whose mass reaches top_p (at least one token).
                outside = sorted_probs.cumsum(0) - sorted_probs >= r.top_p
                sorted_probs[outside] = 0.0
                probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
            chosen[row] = int(torch.multinomial(probs, 1, generator=gen))
        return chosen


class _Rows:
    """Per-request decoding state of one `stream` call: text streams, stop ids, token counts
    and sampling generators, indexed by the request's stream index."""

    def __init__(self, engine: DecodeEngine, requests: list[DecodeRequest]) -> None:
        self.engine, self.requests = engine, requests
        self.streams: list[TextStream] = []
        self.stops: list[set[int]] = []
        self.counts: list[int] = []
        self.generators: list[torch.Generator | None] = []
        self._register(requests)

    def _register(self, requests: Sequence[DecodeRequest]) -> None:
        engine = self.engine
        self.streams += [TextStream(engine.tokenizer, r.stop_strings) for r in requests]
        self.stops += [set(engine.stop_ids) | set(r.stop_ids) for r in requests]
        self.counts += [0] * len(requests)
        self.generators += [engine._generator(r, engine.device) for r in requests]

    def add(self, joining: Sequence[DecodeRequest]) -> list[int]:
        """Register arrivals; their stream indices come after every earlier request's."""
        first = len(self.requests)
        self.requests.extend(joining)
        self._register(joining)
        return list(range(first, len(self.requests)))

    def generators_of(self, indices: Sequence[int]) -> list[torch.Generator | None]:
        return [self.generators[i] for i in indices]

    def advance(self, indices: Sequence[int], tokens: Sequence[int]) -> tuple[list, list]:
        """Each request's delta for its chosen token; the rows (positions in `indices`) that
        go on."""
        deltas, keep = [], []
        for row, (i, token) in enumerate(zip(indices, tokens, strict=True)):
            r, text_stream = self.requests[i], self.streams[i]
            if r.cancelled is not None and r.cancelled():
                deltas.append(Delta(i, "", None, "cancelled"))
                continue
            self.counts[i] += 1
            if token in self.stops[i]:
                deltas.append(Delta(i, text_stream.finish(), token, "stop"))
                continue
            text = text_stream.push(token)
            reason = None
            if text_stream.matched_stop:
                reason = "stop"
            elif self.counts[i] >= r.max_new_tokens:
                reason = "length"
                text += text_stream.finish()
            deltas.append(Delta(i, text, token, reason))
            if reason is None:
                keep.append(row)
        return deltas, keep


def length_groups(
    lengths: Sequence[int], slack: float = 0.25, min_pad: int = 16
) -> list[list[int]]:
    """Indices of `lengths` in groups to prefill together, longest first: a prompt joins the
    current group when its padding to the group's longest is at most `min_pad` tokens or
    `slack` of that length (so each extra forward saves more compute than it costs)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups:
            width = lengths[groups[-1][0]]
            if width - lengths[i] <= max(min_pad, slack * width):
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def _cache_of(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def mergeable(cache) -> bool:
    """`merge_caches` knows this cache: a `DynamicCache` of full or sliding-window layers
    (stock or growing, kv_cache.py)."""
    from transformers.cache_utils import DynamicCache

    layers = getattr(cache, "layers", None)
    known = (*GROWING, *GROWING.values())
    return (
        type(cache) is DynamicCache
        and bool(layers)
        and all(type(layer) in known for layer in layers)
    )


def merge_caches(cache, mask: torch.Tensor, other, other_mask: torch.Tensor) -> torch.Tensor:
    """Append the rows of `other` (with its attention mask) to `cache` in place; return the
    merged mask.

    Both are right-aligned: the side with fewer columns is left-padded (zero keys and values,
    mask 0), which changes no row's positions (`cumsum(mask) - 1`) nor any column distance
    between its tokens. A sliding-window layer keeps the last `min(columns, window - 1)` columns
    of its rows, so both sides' stored states are left-padded to the longer of the two and its
    column count becomes the longer side's.
    """
    for layer, new in zip(cache.layers, other.layers, strict=True):
        width = max(layer.keys.shape[-2], new.keys.shape[-2])
        layer.keys = torch.cat([_pad_left(layer.keys, width), _pad_left(new.keys, width)])
        layer.values = torch.cat([_pad_left(layer.values, width), _pad_left(new.values, width)])
        if hasattr(layer, "cumulative_length"):
            layer.cumulative_length = max(layer.cumulative_length, new.cumulative_length)
    width = max(mask.shape[1], other_mask.shape[1])
    return torch.cat([_pad_left(mask, width), _pad_left(other_mask, width)])


def _pad_left(t: torch.Tensor, width: int) -> torch.Tensor:
    """`t` left-padded with zeros along its sequence dim (-2 for KV states, -1 for a mask)."""
    dim = -1 if t.dim() == 2 else -2
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)
