"""Requests to an OpenAI-compatible endpoint through the official `openai` package: a bounded number in
flight, an optional requests-per-second limit, and retries with exponential backoff on 429, 5xx, timeouts and
connection errors. One asyncio event loop per batch of requests; no thread per request."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from hydra_eval import redact
from hydra_eval.errors import UserError
from hydra_eval.schema import ApiConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


class ApiError(UserError):
    """The endpoint refused a request, or kept failing after every retry (transient: a sweep may relaunch)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(redact.text(message))  # an endpoint's reply may echo the key
        self.transient = transient

    def __reduce__(self) -> tuple[Any, ...]:  # pickled back from submitit jobs with its flag
        return (type(self), (str(self), self.transient))


@dataclass(frozen=True)
class Call:
    """One answered request: the response and what it cost."""

    response: Any
    latency_s: float  # of the attempt that succeeded
    attempts: int


def api_key(api: ApiConfig) -> str:
    """The key from the environment variable the config names; never from the config itself."""
    if not api.api_key_env:
        return "EMPTY"  # local servers (llama.cpp, vLLM) accept any key
    key = os.environ.get(api.api_key_env)
    if not key:
        raise UserError(f"model.api.api_key_env: the environment variable {api.api_key_env} is not set")
    return redact.secret(key)


def check_reachable(api: ApiConfig, group: str, name: str) -> None:
    """One GET <base_url>/models, without the key: any HTTP answer (a 401 or 404 too) means a server is there.
    No answer at all (refused, unknown host, timeout) is one line before any work, not an APIConnectionError
    after all of it."""
    import urllib.error
    import urllib.request

    url = api.base_url.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=min(api.timeout_s, 10.0)):
            return
    except urllib.error.HTTPError:
        return  # it answered
    except (OSError, ValueError) as e:  # URLError (refused, unknown host), a timeout; ValueError: not a URL
        reason = getattr(e, "reason", None) or e
        raise UserError(
            f"{group}={name}: cannot reach {api.base_url} ({reason}): start its server, or point "
            f"{group}.api.base_url at one"
        ) from None


def backoff(attempt: int, base_s: float, cap_s: float, retry_after_s: float | None = None) -> float:
    """Seconds to wait before retry number attempt+1: base * 2^attempt, capped; a longer Retry-After wins."""
    delay = min(cap_s, base_s * 2**attempt)
    return max(delay, retry_after_s) if retry_after_s else delay


def _retry_after(error: Any) -> float | None:
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def describe(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    message = str(getattr(error, "message", "") or error).splitlines()[0] if str(error) else type(error).__name__
    return f"HTTP {status}: {message}" if status else f"{type(error).__name__}: {message}"


def retryable(error: Exception) -> bool:
    import openai

    if isinstance(error, openai.APIConnectionError):  # includes timeouts
        return True
    status = getattr(error, "status_code", None)
    return isinstance(error, openai.APIStatusError) and (status == 429 or (status or 0) >= 500)


class RateLimiter:
    """Spaces request starts 1/per_s seconds apart: each waits for its own slot, one interval after the
    previous request's (no limit when per_s is None)."""

    def __init__(self, per_s: float | None):
        self.interval = 1.0 / per_s if per_s else 0.0
        self.next_start = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + self.interval
        await asyncio.sleep(start - now)


class Endpoint:
    """Runs batches of requests against one endpoint, in order of the inputs."""

    def __init__(self, api: ApiConfig):
        for name in ("httpx", "httpx2", "openai"):  # a line per request would bury the job's log
            logging.getLogger(name).setLevel(logging.WARNING)
        self.api = api
        self.key = api_key(api)  # fail before any work when the key is missing
        self.retries = 0  # retried attempts so far, over all batches

    def run(self, request: Callable[[Any, T], Awaitable[Any]], items: Sequence[T]) -> list[Call]:
        """request(client, item) for every item, at most max_concurrency at once; results in input order."""
        return asyncio.run(self._run_all(request, items))

    async def _run_all(self, request: Callable[[Any, T], Awaitable[Any]], items: Sequence[T]) -> list[Call]:
        from openai import AsyncOpenAI

        limiter = RateLimiter(self.api.requests_per_s)
        slots = asyncio.Semaphore(max(1, self.api.max_concurrency))
        async with AsyncOpenAI(
            base_url=self.api.base_url, api_key=self.key, timeout=self.api.timeout_s, max_retries=0
        ) as client:

            async def one(item: T) -> Call:
                return await self._with_retries(lambda: request(client, item), limiter, slots)

            tasks = [asyncio.ensure_future(one(item)) for item in items]
            try:
                return list(await asyncio.gather(*tasks))
            finally:  # one request failed for good: cancel the rest, the job fails with that request's error
                for task in tasks:
                    task.cancel()

    async def _with_retries(
        self, send: Callable[[], Awaitable[Any]], limiter: RateLimiter, slots: asyncio.Semaphore
    ) -> Call:
        api = self.api
        for attempt in range(api.retries + 1):
            async with slots:  # a free slot first, then the rate limit: starts stay spaced
                await limiter.wait()
                t0 = time.perf_counter()
                try:
                    response = await send()
                    return Call(response, time.perf_counter() - t0, attempt + 1)
                except Exception as e:  # noqa: BLE001 - sorted into retryable or not just below
                    error = e
            if not retryable(error):
                import openai

                if not isinstance(error, openai.APIError):
                    raise error  # a bug here, not the endpoint's answer
                raise ApiError(f"{api.base_url} refused a request: {describe(error)}") from None
            if attempt == api.retries:
                break
            delay = backoff(attempt, api.backoff_s, api.backoff_max_s, _retry_after(error))
            self.retries += 1
            log.warning(
                "%s: %s; retry %d/%d in %.1fs", api.base_url, describe(error), attempt + 1, api.retries, delay
            )
            await asyncio.sleep(delay)
        raise ApiError(
            f"{api.base_url}: {describe(error)} (gave up after {api.retries + 1} attempts)", transient=True
        )
