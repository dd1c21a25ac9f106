"""The HTTP side of a delivery attempt: one POST over kept-alive connections (aiohttp).

Why aiohttp and not httpx: at 64 requests in flight, httpx 0.28 spent about 1.7–3 ms of CPU per
request (its connection pool re-checks every connection on each request and each response),
which alone caps a core at a few hundred deliveries/s; aiohttp spends about 0.12 ms
(benchmarks/analysis.md, B5). Redirects are not followed (a 3xx is an answer, hence a retry) and
cookies are not kept: each delivery stands alone.
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

__all__ = ["Answer", "Post", "open_post"]


@dataclass(frozen=True, slots=True)
class Answer:
    """The receiver's status code, or why there was none (refused, timed out, reset…)."""

    status_code: int | None
    error: str | None = None


#: ``post(url, body, headers)``: one attempt; never raises for a receiver's failure.
Post = Callable[[str, bytes, Sequence[tuple[str, str]]], Awaitable[Answer]]


@asynccontextmanager
async def open_post(*, timeout_s: float, concurrency: int) -> AsyncIterator[Post]:
    """A ``post`` with up to ``concurrency`` kept-alive connections and a ``timeout_s`` limit
    per request. Proxies from ``HTTP(S)_PROXY`` apply when set (looked up per request then, so
    only then)."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=bool(urllib.request.getproxies()),
    )

    async def post(url: str, body: bytes, headers: Sequence[tuple[str, str]]) -> Answer:
        try:
            async with session.post(
                url, data=body, headers=list(headers), allow_redirects=False
            ) as response:
                await response.read()  # so the connection goes back to the pool
                return Answer(response.status)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            return Answer(None, (f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)[:500])

    try:
        yield post
    finally:
        await session.close()
