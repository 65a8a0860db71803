"""A local OpenAI-compatible chat server with canned answers, in a background thread.

Lets the API client be tested, benchmarked and smoke-tested against a config (URL, model,
prompts, concurrency) without a GPU, a vLLM install or an API bill:

    with serve_canned(latency_s=0.02) as server:
        settings = ApiParams(base_url=server.base_url, model="canned")
        print(caption_all(requests, settings))
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# (request JSON, the request itself, for headers) -> the reply
ChatHandler = Callable[[dict[str, Any], web.Request], Awaitable[web.StreamResponse]]


def chat_reply(content: str, model: str = "canned") -> web.Response:
    """A 200 in the shape the client parses: `choices[0].message.content`."""
    return web.json_response({
        "id": "chatcmpl-canned", "object": "chat.completion", "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
    })


def _parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        content = body["messages"][-1]["content"]
    except (KeyError, IndexError, TypeError):
        return []
    return [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []


def prompt_of(body: dict[str, Any]) -> str:
    """The text part of the last message ("" when there is none)."""
    return next((str(p.get("text", "")) for p in _parts(body) if p.get("type") == "text"), "")


def image_of(body: dict[str, Any]) -> bytes | None:
    """The bytes of the last message's data-URL image, None when absent or not base64."""
    for part in _parts(body):
        if part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            _, sep, data = url.partition(";base64,")
            try:
                return base64.b64decode(data, validate=True) if sep else None
            except (binascii.Error, ValueError):
                return None
    return None


async def echo_handler(body: dict[str, Any], request: web.Request) -> web.StreamResponse:
    """Default: a caption that names the prompt and the image size, so mix-ups show."""
    image = image_of(body)
    return chat_reply(f"canned caption for {prompt_of(body)!r} "
                      f"({len(image) if image is not None else 'no'} image bytes)")


@dataclass
class CannedServer:
    """What the server saw; read it after the client is done (the server thread writes it)."""

    base_url: str
    received: list[dict[str, Any]] = field(default_factory=list, repr=False)  # body + headers
    in_flight: int = 0
    max_in_flight: int = 0


@contextmanager
def serve_canned(handler: ChatHandler | None = None, *, latency_s: float = 0.0,
                 host: str = "127.0.0.1", port: int = 0, record: bool = True
                 ) -> Iterator[CannedServer]:
    """Serve POST {base_url}/chat/completions until the block ends; port 0 picks a free one.

    `latency_s` stands in for generation time before `handler` (default `echo_handler`) runs.
    With `record`, every request's JSON body and headers are kept in `server.received`.
    """
    handler = handler or echo_handler
    server = CannedServer(base_url="")

    async def chat(request: web.Request) -> web.StreamResponse:
        server.in_flight += 1
        server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": {"message": "body is not JSON"}}, status=400)
            if record:
                server.received.append({"body": body, "headers": dict(request.headers)})
            if latency_s:
                await asyncio.sleep(latency_s)
            return await handler(body, request)
        finally:
            server.in_flight -= 1

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    # handler_cancellation: a client that timed out disconnects, and its handler should stop
    # sleeping then, as a real server would, instead of holding shutdown up.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="canned-chat-server", daemon=True)
    thread.start()

    def call(coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)

    try:
        call(runner.setup())
        call(web.TCPSite(runner, host, port).start())
        bound_host, bound_port = runner.addresses[0][:2]
        server.base_url = f"http://{bound_host}:{bound_port}/v1"
        yield server
    finally:
        try:
            call(runner.cleanup())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()
