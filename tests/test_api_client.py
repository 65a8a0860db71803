"""The OpenAI-compatible captioning client against a real HTTP server on 127.0.0.1.

The server (`serve_canned`, a real aiohttp app in a thread) is scripted by the prompt text:
`<scenario>#<unique tag>`, so each request picks how the server misbehaves and attempts are
counted per request. Nothing in aiohttp is mocked: timeouts, retries and connection handling
are the real ones.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from sail_pipeline.captioning import (
    ApiCaptioner,
    ApiKey,
    CaptionRequest,
    caption_all,
    image_mime_type,
    resolve_api_key,
)
from sail_pipeline.captioning.local_server import (
    CannedServer,
    chat_reply,
    image_of,
    prompt_of,
    serve_canned,
)
from sail_pipeline.schema import ApiParams

SECRET = "sk-test-SECRET-123"
PNG = b"\x89PNG\r\n\x1a\n"
SLOW_S = 2.0  # how long "slow" replies take; the client's timeout in those tests is 0.3 s


def canned_caption(prompt: str, image: bytes) -> str:
    return f"caption of {prompt} with {len(image)} bytes"


class Script:
    """The server's behaviour per prompt, and how many times each prompt was asked."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()

    async def __call__(self, body: dict[str, Any], request: web.Request) -> web.StreamResponse:
        prompt = prompt_of(body)
        self.attempts[prompt] += 1
        n = self.attempts[prompt]
        scenario = prompt.split("#")[0]
        image = image_of(body) or b""
        ok = chat_reply(canned_caption(prompt, image))
        if scenario == "429x2" and n <= 2:
            return web.json_response({"error": "slow down"}, status=429,
                                     headers={"Retry-After": "0"})
        if scenario == "429-long-retry-after" and n == 1:
            return web.json_response({"error": "slow down"}, status=429,
                                     headers={"Retry-After": "100"})
        if scenario == "500x1" and n == 1:
            return web.Response(status=500, text="internal error")
        if scenario == "503":
            return web.Response(status=503, text="overloaded, try later")
        if scenario == "400":
            return web.json_response({"error": {"message": "image too small"}}, status=400)
        if scenario == "echo-auth":  # a proxy that echoes headers in its error body
            return web.Response(status=401, text=f"bad key {request.headers['Authorization']}")
        if scenario == "500-echo-auth":
            return web.Response(status=500, text=f"oops {request.headers['Authorization']}")
        if (scenario == "slow1" and n == 1) or scenario == "slow":
            await asyncio.sleep(SLOW_S)
        if scenario == "nonjson" or (scenario == "nonjson1" and n == 1):
            return web.Response(status=200, text="<html>502 from a proxy</html>",
                                content_type="text/html")
        if scenario == "nochoices":
            return web.json_response({"object": "chat.completion", "choices": []})
        if scenario == "429-bare" and n == 1:  # no Retry-After: the client's own backoff
            return web.json_response({"error": "slow down"}, status=429)
        if scenario == "429-date" and n == 1:  # Retry-After as an HTTP date
            return web.json_response({"error": "slow down"}, status=429,
                                     headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
        if scenario in ("502", "504") and n == 1:
            return web.Response(status=int(scenario), text="<html>bad gateway</html>",
                                content_type="text/html")
        if scenario == "null-content":
            return web.json_response({"choices": [{"message": {"role": "assistant",
                                                               "content": None}}]})
        if scenario == "hang":  # accepts the request and never answers
            await asyncio.sleep(30)
        if scenario == "trickle":  # headers at once, then a byte every 0.2 s, for 4 s
            response = web.StreamResponse(status=200, headers={"Content-Type":
                                                               "application/json"})
            await response.prepare(request)
            for byte in b'{"choices": [{"message": {"content": "late"}}]}'[:20]:
                await response.write(bytes([byte]))
                await asyncio.sleep(0.2)
            return response
        if scenario == "reset" and n == 1:  # the connection drops halfway through the body
            response = web.StreamResponse(status=200, headers={"Content-Length": "500"})
            await response.prepare(request)
            await response.write(b'{"choices": [{"mess')
            request.transport.close()
            return response
        if scenario == "blank":
            return chat_reply("   ")
        return ok


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def server(script: Script) -> Iterator[CannedServer]:
    with serve_canned(script) as running:
        yield running


def settings_for(server: CannedServer, **overrides: Any) -> ApiParams:
    values: dict[str, Any] = {"base_url": server.base_url, "model": "test-vlm", "timeout_s": 5.0,
                              "max_retries": 3, "backoff_s": 0.01, "max_backoff_s": 0.05,
                              "concurrency": 8}
    return ApiParams(**(values | overrides))


def request(scenario: str, tag: str, size: int = 16) -> CaptionRequest:
    return CaptionRequest(id=f"{scenario}-{tag}", image=PNG + bytes(range(size % 256)) * 3,
                          prompt=f"{scenario}#{tag}")


def received_for(server: CannedServer, prompt: str) -> list[dict[str, Any]]:
    return [r for r in server.received if prompt_of(r["body"]) == prompt]


def test_happy_path_sends_openai_vision_request(server: CannedServer) -> None:
    requests = [request("ok", str(i), size=10 + 7 * i) for i in range(6)]
    settings = settings_for(server, detail="low", max_tokens=99)
    results = caption_all(requests, settings, ApiKey(SECRET), progress=False)

    assert [r.id for r in results] == [q.id for q in requests]
    for req, res in zip(requests, results, strict=True):
        assert res.caption == canned_caption(req.prompt, req.image)
        assert res.error is None and res.attempts == 1 and res.ok and res.seconds > 0
        [seen] = received_for(server, req.prompt)
        body = seen["body"]
        assert body["model"] == "test-vlm" and body["max_tokens"] == 99
        assert body["temperature"] == 0.0
        [message] = body["messages"]
        assert message["role"] == "user"
        text, image = message["content"]
        assert text == {"type": "text", "text": req.prompt}
        assert image["type"] == "image_url" and image["image_url"]["detail"] == "low"
        url = image["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        assert base64.b64decode(url.removeprefix("data:image/png;base64,")) == req.image
        assert seen["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_no_key_sends_no_authorization(server: CannedServer) -> None:
    [result] = caption_all([request("ok", "nokey")], settings_for(server), None, progress=False)
    assert result.ok
    [seen] = received_for(server, "ok#nokey")
    assert "Authorization" not in seen["headers"]


def test_image_type_is_sniffed(server: CannedServer) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 20
    webp = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8
    assert image_mime_type(jpeg) == "image/jpeg"
    assert image_mime_type(webp) == "image/webp"
    assert image_mime_type(b"GIF89a....") == "image/gif"
    assert image_mime_type(PNG + b"rest") == "image/png"
    assert image_mime_type(b"unknown") == "image/png"
    requests = [CaptionRequest("j", jpeg, "ok#jpeg"), CaptionRequest("w", webp, "ok#webp")]
    assert all(r.ok for r in caption_all(requests, settings_for(server), progress=False))
    for prompt, mime, raw in (("ok#jpeg", "image/jpeg", jpeg), ("ok#webp", "image/webp", webp)):
        [seen] = received_for(server, prompt)
        url = seen["body"]["messages"][0]["content"][1]["image_url"]["url"]
        assert url.startswith(f"data:{mime};base64,") and image_of(seen["body"]) == raw


def test_429_with_retry_after_then_success(server: CannedServer, script: Script) -> None:
    captioner = ApiCaptioner(settings_for(server, max_retries=5), SECRET)
    [result] = captioner.run([request("429x2", "a")], progress=False)
    assert result.caption == canned_caption("429x2#a", request("429x2", "a").image)
    assert result.attempts == 3 and script.attempts["429x2#a"] == 3
    assert captioner.stats["retries"] == {"http_429": 2}
    assert captioner.stats["requests_sent"] == 3 and captioner.stats["failed"] == 0


def test_retry_after_is_capped_by_max_backoff(server: CannedServer,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sail_pipeline.captioning")
    settings = settings_for(server, max_backoff_s=0.02)
    [result] = caption_all([request("429-long-retry-after", "a")], settings, progress=False)
    assert result.ok and result.attempts == 2
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "http 429" in warning.getMessage() and "retrying in 0.02s" in warning.getMessage()


def test_500_retried_503_gives_up(server: CannedServer, script: Script,
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sail_pipeline.captioning")
    settings = settings_for(server, max_retries=3)
    captioner = ApiCaptioner(settings)
    flaky, down = captioner.run([request("500x1", "a"), request("503", "a")], progress=False)
    assert flaky.ok and flaky.attempts == 2
    assert not down.ok and down.caption is None
    assert down.attempts == settings.max_retries + 1 == script.attempts["503#a"]
    assert "503" in down.error and "overloaded" in down.error
    assert captioner.stats["failures"] == {"http_503": 1}
    assert captioner.stats["retries"] == {"http_500": 1, "http_503": 3}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4
    assert all("503-a" in w or "500x1-a" in w for w in warnings)
    assert "attempt 1 of 4" in warnings[0] or "attempt 1 of 4" in warnings[1]


def test_timeouts_are_retried_then_recorded(server: CannedServer, script: Script) -> None:
    settings = settings_for(server, timeout_s=0.3, max_retries=2)
    captioner = ApiCaptioner(settings)
    slow_once, always_slow, fast = captioner.run(
        [request("slow1", "a"), request("slow", "a"), request("ok", "a")], progress=False)
    assert slow_once.ok and slow_once.attempts == 2
    assert not always_slow.ok and always_slow.attempts == 3
    assert always_slow.error.startswith("timeout after 3 attempts")
    assert fast.ok and fast.attempts == 1
    assert script.attempts["slow#a"] == 3
    assert captioner.stats["failures"] == {"timeout": 1}


def test_malformed_replies_are_retried_and_recorded(server: CannedServer, script: Script) -> None:
    settings = settings_for(server, max_retries=2)
    scenarios = ["ok", "nonjson", "ok", "nochoices", "blank", "nonjson1", "ok"]
    requests = [request(s, str(i)) for i, s in enumerate(scenarios)]
    captioner = ApiCaptioner(settings)
    results = captioner.run(requests, progress=False)
    assert [r.id for r in results] == [q.id for q in requests]
    by_scenario = dict(zip(scenarios, results, strict=False))
    for req, res in zip(requests, results, strict=True):
        if req.prompt.startswith("ok#"):
            assert res.caption == canned_caption(req.prompt, req.image) and res.attempts == 1
    assert by_scenario["nonjson1"].ok and by_scenario["nonjson1"].attempts == 2
    for bad in ("nonjson", "nochoices", "blank"):
        res = by_scenario[bad]
        assert res.caption is None and res.attempts == 3
        assert res.error.startswith("malformed reply")
    assert "not JSON" in by_scenario["nonjson"].error
    assert "no choices[0].message.content" in by_scenario["nochoices"].error
    assert captioner.stats["failures"] == {"malformed": 3}
    assert captioner.stats["succeeded"] == 4


def test_every_endpoint_fault_ends_in_a_caption_or_a_recorded_failure_within_the_limits(
        server: CannedServer, script: Script) -> None:
    import time

    settings = settings_for(server, timeout_s=0.5, max_retries=2, backoff_s=0.01,
                            max_backoff_s=0.05)
    scenarios = ["429-bare", "429-date", "502", "504", "null-content", "hang", "trickle",
                 "reset", "ok"]
    requests = [request(s, "f") for s in scenarios]
    captioner = ApiCaptioner(settings, SECRET)
    started = time.perf_counter()
    results = dict(zip(scenarios, captioner.run(requests, progress=False), strict=True))
    elapsed = time.perf_counter() - started
    # Recovered after one retry: a 429 without (or with a date as) Retry-After, 502/504 from a
    # proxy, a connection reset mid-body.
    for name in ("429-bare", "429-date", "502", "504", "reset", "ok"):
        assert results[name].ok and results[name].caption, (name, results[name].error)
        assert results[name].attempts == (1 if name == "ok" else 2), name
    # Never answered properly: recorded with a reason after every attempt.
    assert results["null-content"].error.startswith("malformed reply")
    assert results["hang"].error.startswith("timeout after 3 attempts")
    assert results["trickle"].error.startswith("timeout after 3 attempts")
    for name in ("null-content", "hang", "trickle"):
        assert results[name].caption is None and results[name].attempts == 3
    # Concurrent requests, each capped at 3 attempts of 0.5 s plus backoffs: far from a hang.
    assert elapsed < 3 * 0.5 + 3 * 0.05 + 5.0, elapsed
    assert captioner.stats["failures"] == {"malformed": 1, "timeout": 2}


def test_400_is_not_retried(server: CannedServer, script: Script) -> None:
    [result] = caption_all([request("400", "a")], settings_for(server), progress=False)
    assert result.attempts == 1 and script.attempts["400#a"] == 1
    assert result.error.startswith("http 400:") and "image too small" in result.error


def test_connection_errors_are_retried_then_recorded() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ApiParams(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=2,
                           backoff_s=0.01, timeout_s=2)
    captioner = ApiCaptioner(settings, SECRET)
    [result] = captioner.run([request("ok", "refused")], progress=False)
    assert result.attempts == 3 and result.error.startswith("connection error")
    assert captioner.stats["failures"] == {"connection": 1}


def test_concurrency_is_bounded_and_order_kept(script: Script) -> None:
    with serve_canned(script, latency_s=0.05) as server:
        requests = [request("ok", str(i), size=i) for i in range(40)]
        results = caption_all(requests, settings_for(server, concurrency=4), progress=True)
        assert 1 < server.max_in_flight <= 4
    assert [r.id for r in results] == [q.id for q in requests]
    assert [r.caption for r in results] == [canned_caption(q.prompt, q.image) for q in requests]


def test_api_key_never_leaks(server: CannedServer, caplog: pytest.LogCaptureFixture,
                             capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(server, timeout_s=0.3, max_retries=1)
    key = resolve_api_key(settings, {"api_key": SECRET})
    captioner = ApiCaptioner(settings, key)
    scenarios = ["ok", "429x2", "500x1", "503", "400", "slow", "nonjson", "echo-auth",
                 "500-echo-auth"]
    results = captioner.run([request(s, "leak") for s in scenarios], progress=True)
    assert any(r.ok for r in results) and any(not r.ok for r in results)
    assert all(r["headers"]["Authorization"] == f"Bearer {SECRET}" for r in server.received)
    echoed = [r for r in results if "echo-auth" in r.id]
    assert [r.error.startswith(("http 401", "http 500")) for r in echoed] == [True, True]
    assert all("Bearer ***" in r.error for r in echoed)  # the proxy echoed it; we scrubbed it
    texts = [caplog.text, capsys.readouterr().err, repr(captioner), str(captioner),
             repr(settings), repr(key), str(key), repr(captioner.stats), repr(captioner.metrics()),
             repr(vars(captioner))]
    texts += [repr(r) for r in results] + [str(r.error) for r in results]
    for text in texts:
        assert SECRET not in text
    assert "sk-test" not in caplog.text


def test_resolve_api_key_prefers_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ApiParams(base_url="http://127.0.0.1:1/v1", model="m", api_key_env="SAIL_TEST_KEY")
    monkeypatch.setenv("SAIL_TEST_KEY", "from-env")
    assert resolve_api_key(settings, {"api_key": "from-credentials"}).reveal() == "from-credentials"
    assert resolve_api_key(settings, {}).reveal() == "from-env"
    assert resolve_api_key(settings, None).reveal() == "from-env"
    monkeypatch.delenv("SAIL_TEST_KEY")
    assert resolve_api_key(settings, None) is None
    assert resolve_api_key(settings, {"api_key": ""}) is None


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="concurency"):
        ApiParams(base_url="http://x/v1", model="m", concurency=4)
    with pytest.raises(ValidationError, match="concurrency"):
        ApiParams(base_url="http://x/v1", model="m", concurrency=0)
    with pytest.raises(ValidationError, match="base_url"):
        ApiParams(base_url="127.0.0.1:8000/v1", model="m")
    settings = ApiParams(base_url="http://x/v1/", model="m")
    assert settings.endpoint == "http://x/v1/chat/completions"


def test_sync_wrapper_refuses_a_running_loop() -> None:
    settings = ApiParams(base_url="http://127.0.0.1:1/v1", model="m")

    async def inside_a_loop() -> None:
        caption_all([], settings, progress=False)

    with pytest.raises(RuntimeError, match="await"):
        asyncio.run(inside_a_loop())


def test_empty_batch() -> None:
    settings = ApiParams(base_url="http://127.0.0.1:1/v1", model="m")
    assert caption_all([], settings, progress=False) == []
