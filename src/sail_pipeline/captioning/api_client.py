"""Caption images through any OpenAI-compatible chat endpoint (GPT-4o, vLLM, LMDeploy, SGLang).

Recaptioning a pool is hours of mostly waiting on the server, so requests run concurrently
(bounded, so a local server is not flooded and a hosted API's rate limit is respected), and a
flaky reply never stops the run: every request ends as one `CaptionResult`, either a caption or a
short reason that the pipeline quarantines the id with. No Kedro import: scripts use it too.

    settings = ApiParams(base_url="http://127.0.0.1:8000/v1", model="Qwen2-VL-7B")
    results = caption_all(requests, settings, resolve_api_key(settings, credentials))
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from tqdm import tqdm

from sail_pipeline.schema import ApiParams

logger = logging.getLogger("sail_pipeline.captioning")

# Statuses a server returns when it is overloaded or restarting: worth asking again.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses whose Retry-After header says how long the server wants us to wait.
RETRY_AFTER_STATUSES = frozenset({429, 503})
_BODY_CHARS = 200


class ApiKey:
    """Holds the key so that no repr, log line or traceback can print it by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("an API key must not be empty")
        self._value = value

    def reveal(self) -> str:
        """The key itself: only for the Authorization header."""
        return self._value

    def __repr__(self) -> str:
        return "ApiKey('***')"

    def __str__(self) -> str:
        return "***"


def resolve_api_key(settings: ApiParams, credentials: Mapping[str, Any] | None = None
                    ) -> ApiKey | None:
    """Kedro credentials win over the environment; None for local servers that need no key."""
    if credentials and credentials.get("api_key"):
        return ApiKey(str(credentials["api_key"]))
    from_env = os.environ.get(settings.api_key_env)
    return ApiKey(from_env) if from_env else None


@dataclass(frozen=True)
class CaptionRequest:
    id: str
    image: bytes = field(repr=False)  # PNG, JPEG, WebP or GIF bytes, sent as a data URL
    prompt: str


@dataclass(frozen=True)
class CaptionResult:
    """Exactly one per request: `caption` or an `error` short enough to store as a reason."""

    id: str
    caption: str | None
    error: str | None
    attempts: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.caption is not None


def image_mime_type(image: bytes) -> str:
    """Servers decode by the declared type, so a JPEG sent as image/png can be rejected."""
    if image.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "image/webp"
    if image[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "image/png"


@dataclass(frozen=True)
class _Failure:
    kind: str  # a counter key: "http_429", "timeout", "connection", "malformed"
    reason: str  # what the result and the log say
    retryable: bool
    retry_after: float | None = None


def _excerpt(body: bytes) -> str:
    return " ".join(body.decode("utf-8", errors="replace").split())[:_BODY_CHARS]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except ValueError:  # absent, or an HTTP date: fall back to our own back-off
        return None


def _content(body: bytes) -> str | _Failure:
    try:
        reply = json.loads(body)
    except ValueError:
        return _Failure("malformed", f"malformed reply: not JSON: {_excerpt(body)}", True)
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        content = None
    if not isinstance(content, str) or not content.strip():
        return _Failure("malformed", "malformed reply: no choices[0].message.content", True)
    return content.strip()


class ApiCaptioner:
    """One backend; `stats` accumulates over every `caption_many` call, for MLflow."""

    def __init__(self, settings: ApiParams, api_key: ApiKey | str | None = None) -> None:
        self.settings = settings
        self._api_key = ApiKey(api_key) if isinstance(api_key, str) else api_key
        self.stats: dict[str, Any] = {"requests_sent": 0, "succeeded": 0, "failed": 0,
                                      "retries": Counter(), "failures": Counter()}

    def __repr__(self) -> str:
        key = "'***'" if self._api_key else None
        return (f"ApiCaptioner(base_url={self.settings.base_url!r}, "
                f"model={self.settings.model!r}, api_key={key})")

    def metrics(self) -> dict[str, float]:
        """`stats` flattened into names `mlflow.log_metrics` accepts."""
        flat: dict[str, float] = {f"api/{k}": float(self.stats[k])
                                  for k in ("requests_sent", "succeeded", "failed")}
        for group in ("retries", "failures"):
            flat.update({f"api/{group}/{kind}": float(n) for kind, n in self.stats[group].items()})
        return flat

    async def caption_many(self, requests: Sequence[CaptionRequest], progress: bool = False
                           ) -> list[CaptionResult]:
        """Results in input order; failures are recorded in the results, never raised.

        A fixed pool of `concurrency` workers (rather than one task per request behind a
        semaphore) keeps memory flat when the pool is millions of images.
        """
        started = time.perf_counter()
        results: list[CaptionResult | None] = [None] * len(requests)
        pending = iter(enumerate(requests))
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        connector = aiohttp.TCPConnector(limit=self.settings.concurrency)
        bar = tqdm(total=len(requests), desc="captioning", unit="img", disable=not progress)

        async def worker(session: aiohttp.ClientSession) -> None:
            for index, request in pending:  # shared iterator: each request is taken once
                results[index] = await self._caption_one(session, request)
                bar.update(1)

        try:
            async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
                workers = min(self.settings.concurrency, len(requests))
                await asyncio.gather(*(worker(session) for _ in range(workers)))
        finally:
            bar.close()
        done = [r for r in results if r is not None]
        failed = sum(not r.ok for r in done)
        logger.info("captioned %d/%d in %.1fs via %s (%d failed, %d retries)",
                    len(done) - failed, len(requests), time.perf_counter() - started,
                    self.settings.model, failed, sum(self.stats["retries"].values()))
        return done

    def run(self, requests: Sequence[CaptionRequest], progress: bool = True
            ) -> list[CaptionResult]:
        """`caption_many` for synchronous callers (Kedro nodes, scripts)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.caption_many(requests, progress=progress))
        raise RuntimeError("caption_all()/ApiCaptioner.run() cannot run inside a running event "
                           "loop: `await ApiCaptioner(settings, key).caption_many(requests)`")

    def _payload(self, request: CaptionRequest) -> bytes:
        settings = self.settings
        data_url = (f"data:{image_mime_type(request.image)};base64,"
                    f"{base64.b64encode(request.image).decode('ascii')}")
        message = {"role": "user", "content": [
            {"type": "text", "text": request.prompt},
            {"type": "image_url", "image_url": {"url": data_url, "detail": settings.detail}},
        ]}
        return json.dumps({"model": settings.model, "messages": [message],
                           "max_tokens": settings.max_tokens,
                           "temperature": settings.temperature}).encode()

    def _scrub(self, text: str) -> str:
        # A misbehaving proxy may echo request headers in its error body.
        return text.replace(self._api_key.reveal(), "***") if self._api_key else text

    async def _attempt(self, session: aiohttp.ClientSession, payload: bytes) -> str | _Failure:
        settings = self.settings
        self.stats["requests_sent"] += 1
        try:
            async with session.post(settings.endpoint, data=payload,
                                    timeout=aiohttp.ClientTimeout(total=settings.timeout_s)
                                    ) as response:
                body = await response.read()
                status = response.status
                retry_after = (_retry_after(response.headers)
                               if status in RETRY_AFTER_STATUSES else None)
        except asyncio.TimeoutError:  # before ClientError: aiohttp's timeouts are both
            return _Failure("timeout", "timeout", True)
        except aiohttp.ClientError as error:
            return _Failure("connection", f"connection error: {type(error).__name__}: {error}",
                            True)
        if status != 200:
            return _Failure(f"http_{status}", f"http {status}: {_excerpt(body)}",
                            status in RETRY_STATUSES, retry_after)
        return _content(body)

    def _delay(self, attempt: int, failure: _Failure) -> float:
        cap = self.settings.max_backoff_s
        if failure.retry_after is not None:
            return min(failure.retry_after, cap)
        # Full jitter: many workers hitting one rate limit must not retry in lockstep.
        return random.uniform(0, min(cap, self.settings.backoff_s * 2 ** (attempt - 1)))

    async def _caption_one(self, session: aiohttp.ClientSession, request: CaptionRequest
                           ) -> CaptionResult:
        started = time.perf_counter()
        payload = self._payload(request)
        attempt = 0
        while True:
            attempt += 1
            try:
                outcome = await self._attempt(session, payload)
            except Exception as error:  # one odd reply must not end the run
                outcome = _Failure("unexpected", f"unexpected {type(error).__name__}: {error}",
                                   False)
            if isinstance(outcome, str):
                self.stats["succeeded"] += 1
                return CaptionResult(request.id, outcome, None, attempt,
                                     time.perf_counter() - started)
            reason = self._scrub(outcome.reason)
            if not outcome.retryable or attempt > self.settings.max_retries:
                break
            delay = self._delay(attempt, outcome)
            self.stats["retries"][outcome.kind] += 1
            logger.warning("caption %s: %s (attempt %d of %d), retrying in %.2fs", request.id,
                           reason, attempt, self.settings.max_retries + 1, delay)
            await asyncio.sleep(delay)
        self.stats["failed"] += 1
        self.stats["failures"][outcome.kind] += 1
        if outcome.kind == "timeout":
            reason = (f"timeout after {attempt} attempt{'s' if attempt > 1 else ''} "
                      f"of {self.settings.timeout_s:g}s")
        elif attempt > 1:
            reason = f"{reason} (after {attempt} attempts)"
        return CaptionResult(request.id, None, reason, attempt, time.perf_counter() - started)


def caption_all(requests: Sequence[CaptionRequest], settings: ApiParams,
                api_key: ApiKey | str | None = None, progress: bool = True
                ) -> list[CaptionResult]:
    """One call from synchronous code; keep an `ApiCaptioner` instead when you want its stats."""
    return ApiCaptioner(settings, api_key).run(requests, progress=progress)
