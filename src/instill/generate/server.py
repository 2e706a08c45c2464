"""`instill serve`: an OpenAI-compatible HTTP server, many LoRA adapters on one base.

Layout (FastAPI + uvicorn, in the `[serve]` extra; this module needs them at import, the CLI
imports it only for `instill serve`):

* **One model, many adapters.** The base is loaded once (`load_bundle`); each `--adapter
  NAME=PATH` is added to it with PEFT (`load_adapter`) and selected by the request's `model`
  field; `POST /admin/adapters` and `DELETE /admin/adapters/NAME` load and unload at run time.
  Each adapter keeps the tokenizer and template it was trained with, so its prompts are rendered
  exactly like its training rows.
* **A scheduler thread batches requests.** Handlers validate and render, then queue a job (one
  row per choice of `n`); the scheduler takes the oldest job's adapter, gathers every waiting
  job for that adapter up to `max_batch` rows, and decodes them together with the step-wise
  engine (stream.py), handing each token to its request's asyncio queue. **Continuous
  batching:** a request arriving while a batch decodes joins it at the next step (prefilled
  alone, its KV cache merged into the batch's; see `DecodeEngine.stream`) when it is for the
  batch's adapter, fits in `max_batch` and no older request for another adapter waits; models
  whose cache cannot be merged run in waves.
* **Mixed adapters are never in one batch.** PEFT activates one adapter for the whole model, so a
  batch of rows for different adapters would need per-row LoRA weights (PEFT's `adapter_names`
  mixed-batch path splits the batch per adapter inside every LoRA layer, which is no faster than
  separate batches on CPU and makes an answer depend on its neighbours' adapters). Batching per
  adapter keeps the guarantee that an answer from adapter A equals A's offline answer, whatever
  else is in flight; the scheduler takes adapters in order of their oldest waiting request, so
  none starves.
* **Safe by default.** Binds 127.0.0.1; with an API key every route but `/health` and the page
  needs `Authorization: Bearer KEY` (compared in constant time); bodies, `max_tokens`, `n`,
  messages and prompt length are bounded; a full queue answers 429; every error has an
  OpenAI-style body; content is encoded as text by the renderer, so no message can forge a
  control token. A client that disconnects mid-stream cancels its rows at the next step.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from instill.data.conversation import Message
from instill.data.formats import check_turns
from instill.data.masking import Renderer
from instill.errors import InstillError, RowError, TemplateError
from instill.generate.stream import NO_ADAPTER, DecodeEngine, DecodeRequest, Delta

PAGE = Path(__file__).with_name("chat_page.html")


@dataclass(frozen=True)
class ServeSettings:
    """Limits and defaults of the server (each has a `instill serve` flag)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    max_tokens_limit: int = 2048
    default_max_tokens: int = 256
    max_n: int = 8
    max_messages: int = 256
    max_prompt_tokens: int = 4096
    max_queue: int = 64
    max_batch: int = 16
    batch_wait_s: float = 0.002  # lets requests that arrive together share a batch


class APIError(Exception):
    """An error answered with an OpenAI-style body."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type_,
            param,
            code,
        )

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


# --------------------------------------------------------------------------- request schemas


class _Request(BaseModel):
    # Strict: "5" is not 5, true is not 1; unknown fields (user, logprobs: false) are ignored.
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Request):
    model: str = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or any(not s or len(s) > 256 for s in stops):
            raise APIError(
                400, "stop: at most 4 non-empty strings of up to 256 chars", param="stop"
            )
        return tuple(stops)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Sampling):
    prompt: str | list[str]


class AdapterLoad(_Request):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][\w.\-]*$")
    path: str = Field(min_length=1, max_length=4096)


# --------------------------------------------------------------------------- models and adapters


@dataclass
class ServedModel:
    """A name clients can ask for: the base, or an adapter on it."""

    name: str
    renderer: Renderer
    stop_ids: tuple[int, ...]
    adapter: str  # the PEFT adapter name; NO_ADAPTER for the base
    parent: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))


class ModelPool:
    """The base model loaded once and the adapters on it, by the names requests use."""

    def __init__(self, bundle, name: str | None = None) -> None:
        self.model = bundle.model
        self.base_name = name or bundle.name
        self.lock = threading.Lock()  # held while decoding and while (un)loading adapters
        # (Un)loads waiting for the lock: a running batch admits no new rows meanwhile, so it
        # drains and the admin call is not starved by continuous batching.
        self.admin_waiting = 0
        self._waiting_lock = threading.Lock()
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        extra = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
        stops = tuple(dict.fromkeys([*bundle.stop_ids, *extra]))
        self.engine = DecodeEngine(self.model, bundle.tokenizer, stops)
        self.models: dict[str, ServedModel] = {
            self.base_name: ServedModel(self.base_name, bundle.renderer, stops, NO_ADAPTER)
        }

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold `lock` for an adapter (un)load; running batches stop admitting rows meanwhile."""
        with self._waiting_lock:
            self.admin_waiting += 1
        try:
            self.lock.acquire()
        finally:
            with self._waiting_lock:
                self.admin_waiting -= 1
        try:
            yield
        finally:
            self.lock.release()

    def get(self, name: str) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            raise APIError(
                404,
                f"model {name!r} not found; available: {', '.join(self.models)}",
                param="model",
                code="model_not_found",
            )
        return served

    def load_adapter(self, name: str, path: str) -> ServedModel:
        """Add the LoRA adapter at `path` under `name`."""
        from peft import PeftModel

        from instill.models.bundle import load_adapter_renderer

        if name in self.models:
            raise APIError(409, f"model {name!r} is already loaded", param="name")
        try:
            renderer, stop_ids, _ = load_adapter_renderer(path)
        except (InstillError, OSError, ValueError) as e:
            raise APIError(400, f"cannot load adapter {name!r}: {e}", param="path") from e
        base_vocab = self.model.get_input_embeddings().weight.shape[0]
        if len(renderer.tokenizer) > base_vocab:
            raise APIError(
                400,
                f"adapter {name!r} has a tokenizer of {len(renderer.tokenizer)} tokens, the base "
                f"{base_vocab}: it was trained with added tokens, serve its merged model instead",
                param="path",
            )
        with self._exclusive():
            try:
                if hasattr(self.model, "peft_config"):
                    self.model.load_adapter(path, adapter_name=name)
                else:
                    self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
                    self.engine.model = self.model
            except (OSError, ValueError, RuntimeError, KeyError) as e:
                raise APIError(400, f"cannot load adapter {name!r}: {e}", param="path") from e
            self.model.eval()
        stops = tuple(dict.fromkeys([*stop_ids, *self.engine.stop_ids]))
        served = ServedModel(name, renderer, stops, name, parent=self.base_name)
        self.models[name] = served
        return served

    def unload_adapter(self, name: str) -> None:
        served = self.get(name)
        if served.adapter == NO_ADAPTER:
            raise APIError(400, "the base model cannot be unloaded", param="name")
        with self._exclusive():
            del self.models[name]
            self.model.delete_adapter(name)


# --------------------------------------------------------------------------- the scheduler


class QueueFull(Exception):
    pass


@dataclass
class Job:
    """One HTTP request: its rows (one per choice) and where their tokens go."""

    served: ServedModel
    requests: list[DecodeRequest]
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    cancelled: threading.Event

    def emit(self, item: tuple) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class Scheduler:
    """Runs batches of jobs on the model, one adapter per batch, on a thread of its own."""

    def __init__(self, pool: ModelPool, settings: ServeSettings) -> None:
        self.pool, self.settings = pool, settings
        self._pending: collections.deque[Job] = collections.deque()
        self._cv = threading.Condition()
        self._closing = False
        # Rows decoding now and rows finished, by finish reason (shown by /health).
        self.stats = {"running_rows": 0, "stop": 0, "length": 0, "cancelled": 0}
        self._thread = threading.Thread(target=self._run, name="instill-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join(timeout=30)

    def submit(self, job: Job) -> None:
        with self._cv:
            if len(self._pending) >= self.settings.max_queue:
                raise QueueFull
            self._pending.append(job)
            self._cv.notify()

    def _take(self) -> list[Job] | None:
        with self._cv:
            while not self._pending and not self._closing:
                self._cv.wait()
            if self._closing:
                return None
        time.sleep(self.settings.batch_wait_s)
        with self._cv:
            adapter = self._pending[0].served.adapter
            batch, rows = [], 0
            for job in list(self._pending):
                if job.cancelled.is_set():  # its client left before it started
                    self._pending.remove(job)
                    self.stats["cancelled"] += len(job.requests)
                    job.emit(("done", None))
                    continue
                if job.served.adapter == adapter and (
                    not batch or rows + len(job.requests) <= self.settings.max_batch
                ):
                    batch.append(job)
                    rows += len(job.requests)
                    self._pending.remove(job)
            return batch

    def _admit(self, adapter: str, running: int, batch: list[Job]) -> list[Job]:
        """Continuous batching: the waiting jobs that join the running batch at this step.

        Jobs are taken in arrival order while they are for the batch's adapter and fit in
        `max_batch`; the first job for another adapter stops admission, so the batch drains and
        that adapter's turn comes (none starves)."""
        joined, room = [], self.settings.max_batch - running
        if self.pool.admin_waiting:  # an adapter (un)load waits for the batch to drain
            return joined
        with self._cv:
            for job in list(self._pending):
                if job.cancelled.is_set():  # its client left before it started
                    self._pending.remove(job)
                    self.stats["cancelled"] += len(job.requests)
                    job.emit(("done", None))
                    continue
                if job.served.adapter != adapter:
                    break
                if (running or joined) and len(job.requests) > room:
                    break
                self._pending.remove(job)
                joined.append(job)
                room -= len(job.requests)
        batch.extend(joined)
        return joined

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if not batch:
                continue
            rows = [(job, k) for job in batch for k in range(len(job.requests))]
            requests = [job.requests[k] for job, k in rows]
            left = {id(job): len(job.requests) for job in batch}  # rows not finished, per job
            self.stats["running_rows"] = len(rows)
            adapter = batch[0].served.adapter

            def admit(running: int, batch=batch, rows=rows, left=left, adapter=adapter):
                joined = self._admit(adapter, running, batch)
                for job in joined:
                    rows.extend((job, k) for k in range(len(job.requests)))
                    left[id(job)] = len(job.requests)
                    self.stats["running_rows"] += len(job.requests)
                return [r for job in joined for r in job.requests]

            try:
                with self.pool.lock:
                    if adapter != NO_ADAPTER and adapter not in self.pool.models:
                        raise APIError(404, f"model {adapter!r} was unloaded", param="model")
                    for deltas in self.pool.engine.stream(requests, adapter, admit=admit):
                        for d in deltas:
                            job, k = rows[d.index]
                            job.emit(("delta", k, d))
                            if d.finish_reason is not None:
                                self.stats[d.finish_reason] += 1
                                self.stats["running_rows"] -= 1
                                left[id(job)] -= 1
                                if not left[id(job)]:  # a finished job does not wait for the batch
                                    job.emit(("done", None))
            except Exception as e:  # the requests fail, the server keeps serving
                for job in batch:
                    if left[id(job)]:
                        job.emit(("error", e))
                        job.emit(("done", None))
            self.stats["running_rows"] = 0

    @property
    def queued(self) -> int:
        return len(self._pending)


# --------------------------------------------------------------------------- the app


def create_app(pool: ModelPool, settings: ServeSettings):
    """The FastAPI app serving `pool` (see the module docstring)."""
    from contextlib import asynccontextmanager

    scheduler = Scheduler(pool, settings)

    @asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        try:
            yield
        finally:
            scheduler.close()

    app = FastAPI(title="instill", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.pool, app.state.scheduler = pool, scheduler
    expected_key = (settings.api_key or "").encode()

    @app.exception_handler(APIError)
    async def api_error(request, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        err = APIError(exc.status_code, str(exc.detail), kind)
        return JSONResponse(err.body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(x) for x in first["loc"]) or None
        return JSONResponse(APIError(422, f"{where}: {first['msg']}", param=where).body(), 422)

    @app.exception_handler(Exception)
    async def internal_error(request, exc: Exception):  # pragma: no cover - a bug, not input
        return JSONResponse(APIError(500, "internal error", "server_error").body(), 500)

    def authorize(request: Request) -> None:
        if not expected_key:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), expected_key
        ):
            raise APIError(
                401,
                "missing or wrong API key: send `Authorization: Bearer <key>`",
                "authentication_error",
                code="invalid_api_key",
            )

    async def read_json(request: Request, schema: type[BaseModel]) -> Any:
        authorize(request)
        body, size = bytearray(), 0
        async for chunk in request.stream():
            size += len(chunk)
            if size <= settings.max_body_bytes:
                body += chunk
            elif size > 64 * settings.max_body_bytes:
                break  # stop reading; the connection is closed after the answer
            # Between the two, the rest is read and dropped, so the client gets its 413
            # instead of a connection reset while it is still sending.
        if size > settings.max_body_bytes:
            raise APIError(
                413, f"request body over {settings.max_body_bytes} bytes", code="body_too_large"
            )
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise APIError(400, f"the body is not valid JSON: {str(e)[:200]}") from e
        try:
            return schema.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or None
            raise APIError(422, f"{where}: {first['msg']}", param=where) from e

    def budget(req: _Sampling, requested: int | None) -> int:
        if req.n > settings.max_n:
            raise APIError(400, f"n must be <= {settings.max_n}, got {req.n}", param="n")
        tokens = requested if requested is not None else settings.default_max_tokens
        if tokens > settings.max_tokens_limit:
            raise APIError(
                400,
                f"max_tokens must be <= {settings.max_tokens_limit}, got {tokens}",
                param="max_tokens",
            )
        return tokens

    def decode_requests(
        req: _Sampling, prompt_ids: list[int], served: ServedModel, max_tokens: int, cancel
    ) -> list[DecodeRequest]:
        if len(prompt_ids) > settings.max_prompt_tokens:
            raise APIError(
                400,
                f"the prompt has {len(prompt_ids)} tokens; the limit is "
                f"{settings.max_prompt_tokens}",
                param="messages",
                code="context_length_exceeded",
            )
        if not prompt_ids:
            raise APIError(400, "the prompt is empty", param="prompt")
        stops = req.stop_strings()
        return [
            DecodeRequest(
                prompt_ids,
                max_new_tokens=max_tokens,
                temperature=req.temperature,
                top_p=req.top_p,
                seed=None if req.seed is None else req.seed + k,
                stop_ids=served.stop_ids,
                stop_strings=stops,
                cancelled=cancel.is_set,
            )
            for k in range(req.n)
        ]

    def enqueue(served: ServedModel, requests: list[DecodeRequest], cancel) -> Job:
        job = Job(served, requests, asyncio.get_running_loop(), asyncio.Queue(), cancel)
        try:
            scheduler.submit(job)
        except QueueFull:
            raise APIError(
                429, "the server is busy (queue full); retry later", "rate_limit_error"
            ) from None
        return job

    async def events(job: Job):
        """`(choice, Delta)` pairs as they come, until the job is done."""
        while True:
            item = await job.queue.get()
            if item[0] == "delta":
                yield item[1], item[2]
            elif item[0] == "error":
                err = item[1]
                raise err if isinstance(err, APIError) else APIError(500, "generation failed")
            else:
                return

    async def watch_disconnect(request: Request, cancel: threading.Event) -> None:
        """Cancel the job's rows when the client goes away (the body is already read, so the
        next ASGI message is the disconnect)."""
        while not cancel.is_set():
            message = await request.receive()
            if message["type"] == "http.disconnect":
                cancel.set()
                return

    def usage(prompt_tokens: int, completion_tokens: int) -> dict:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    async def respond(request: Request, req: _Sampling, served, prompt_ids, max_tokens, chat):
        cancel = threading.Event()
        job = enqueue(served, decode_requests(req, prompt_ids, served, max_tokens, cancel), cancel)
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        n_prompt = len(prompt_ids)  # counted once, as OpenAI does, whatever `n` is
        if not req.stream:
            texts, counts = [""] * req.n, [0] * req.n
            reasons: list[str | None] = [None] * req.n
            watcher = asyncio.create_task(watch_disconnect(request, cancel))
            try:
                async for k, d in events(job):
                    texts[k] += d.text
                    counts[k] += d.token_id is not None
                    reasons[k] = d.finish_reason or reasons[k]
            finally:
                cancel.set()
                watcher.cancel()
            choices = [
                {
                    "index": k,
                    **(
                        {"message": {"role": "assistant", "content": texts[k]}}
                        if chat
                        else {"text": texts[k]}
                    ),
                    "finish_reason": reasons[k],
                    "logprobs": None,
                }
                for k in range(req.n)
            ]
            return JSONResponse(
                {
                    "id": rid,
                    "object": "chat.completion" if chat else "text_completion",
                    "created": created,
                    "model": served.name,
                    "choices": choices,
                    "usage": usage(n_prompt, sum(counts)),
                }
            )
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choices: list, extra: dict | None = None) -> str:
            body = {
                "id": rid,
                "object": obj,
                "created": created,
                "model": served.name,
                "choices": choices,
            }
            if include_usage:
                body["usage"] = None
            body.update(extra or {})
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        def choice(k: int, d: Delta | None, first: bool = False) -> dict:
            text = d.text if d is not None else ""
            reason = d.finish_reason if d is not None else None
            if chat:
                delta = {"role": "assistant", "content": ""} if first else {}
                if text:
                    delta["content"] = text
                return {"index": k, "delta": delta, "finish_reason": reason, "logprobs": None}
            return {"index": k, "text": text, "finish_reason": reason, "logprobs": None}

        async def stream():
            counted = 0
            watcher = asyncio.create_task(watch_disconnect(request, cancel))
            try:
                if chat:
                    yield chunk([choice(k, None, first=True) for k in range(req.n)])
                async for k, d in events(job):
                    counted += d.token_id is not None
                    if d.text or d.finish_reason:
                        yield chunk([choice(k, d)])
                if include_usage:
                    yield chunk([], {"usage": usage(n_prompt, counted)})
                yield "data: [DONE]\n\n"
            except APIError as e:
                yield f"data: {json.dumps(e.body())}\n\n"
            finally:
                cancel.set()  # a client that went away frees its rows at the next step
                watcher.cancel()

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "models": list(pool.models),
            "queued": scheduler.queued,
            "rows": dict(scheduler.stats),
        }

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/v1/models")
    async def list_models(request: Request):
        authorize(request)
        data = [
            {
                "id": m.name,
                "object": "model",
                "created": m.created,
                "owned_by": "instill",
                "parent": m.parent,
                "root": m.parent or m.name,
            }
            for m in pool.models.values()
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        req = await read_json(request, ChatCompletionRequest)
        served = pool.get(req.model)
        max_tokens = budget(req, req.max_completion_tokens or req.max_tokens)
        if len(req.messages) > settings.max_messages:
            raise APIError(
                400,
                f"at most {settings.max_messages} messages, got {len(req.messages)}",
                param="messages",
            )
        messages = [
            Message("system" if m.role == "developer" else m.role, m.text())  # type: ignore[arg-type]
            for m in req.messages
        ]
        try:
            check_turns(messages, "request", "messages", require_response=False)
            if messages[-1].role != "user":
                raise APIError(400, "the last message must be the user's", param="messages")
            prompt_ids = served.renderer.encode_prompt(messages)
        except (RowError, TemplateError, ValueError) as e:
            raise APIError(400, str(e), param="messages") from e
        return await respond(request, req, served, prompt_ids, max_tokens, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        req = await read_json(request, CompletionRequest)
        served = pool.get(req.model)
        max_tokens = budget(req, req.max_tokens)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if len(prompts) != 1:
            raise APIError(
                400, "give one prompt string (use n for several answers)", param="prompt"
            )
        # Raw text, encoded as text: a completion prompt cannot forge control tokens either.
        tok = served.renderer.tokenizer
        prompt_ids = tok(prompts[0], add_special_tokens=False, split_special_tokens=True)[
            "input_ids"
        ]
        return await respond(request, req, served, prompt_ids, max_tokens, chat=False)

    @app.post("/admin/adapters")
    async def load_adapter(request: Request):
        req = await read_json(request, AdapterLoad)
        served = await asyncio.to_thread(pool.load_adapter, req.name, req.path)
        return {"id": served.name, "object": "model", "parent": served.parent}

    @app.delete("/admin/adapters/{name}")
    async def unload_adapter(request: Request, name: str):
        authorize(request)
        await asyncio.to_thread(pool.unload_adapter, name)
        return {"id": name, "object": "model", "deleted": True}

    return app


def serve(pool: ModelPool, settings: ServeSettings) -> None:
    """Run the server until interrupted."""
    import uvicorn

    app = create_app(pool, settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
