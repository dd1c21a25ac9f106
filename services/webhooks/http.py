"""The HTTP side of a delivery attempt: one POST over kept-alive connections (aiohttp).

Why aiohttp and not httpx: at 64 requests in flight, httpx 0.28 spent about 1.7–3 ms of CPU per
request (its connection pool re-checks every connection on each request and each response),
which alone caps a core at a few hundred deliveries/s; aiohttp spends about 0.12 ms
(benchmarks/analysis.md, B5). Redirects are not followed (a 3xx is an answer, hence a retry) and
cookies are not kept: each delivery stands alone.
"""

from __future__ import annotations

import errno
import socket
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from services.core.webhooks.urls import is_public_address

__all__ = ["Answer", "Post", "PublicOnlyResolver", "open_post"]


@dataclass(frozen=True, slots=True)
class Answer:
    """The receiver's status code, or why there was none (refused, timed out, reset…)."""

    status_code: int | None
    error: str | None = None


#: ``post(url, body, headers)``: one attempt; never raises for a receiver's failure.
Post = Callable[[str, bytes, Sequence[tuple[str, str]]], Awaitable[Answer]]


class PublicOnlyResolver(AbstractResolver):
    """Resolves like ``inner`` but keeps public addresses only, at every connection: with
    ``MEDIACDR_WEBHOOK_ALLOW_PRIVATE=false`` a host name checked when its subscription was
    created cannot be pointed at the service's own network later (DNS rebinding). An address
    written in the URL is never resolved; it was checked when the subscription was created."""

    def __init__(self, inner: AbstractResolver) -> None:
        self.inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        public = [r for r in found if is_public_address(r["host"])]
        if not public:
            shown = ", ".join(sorted({r["host"] for r in found})) or "nothing"
            raise OSError(  # EACCES: refused by policy; aiohttp shows the text in its error
                errno.EACCES,
                f"{host} resolves to {shown}, no public address: "
                "MEDIACDR_WEBHOOK_ALLOW_PRIVATE=false refuses it",
            )
        return public

    async def close(self) -> None:
        await self.inner.close()


@asynccontextmanager
async def open_post(
    *, timeout_s: float, concurrency: int, allow_private: bool = True
) -> AsyncIterator[Post]:
    """A ``post`` with up to ``concurrency`` kept-alive connections and a ``timeout_s`` limit
    per request. Proxies from ``HTTP(S)_PROXY`` apply when set (looked up per request then, so
    only then). ``allow_private=False``: connections go to public addresses only (checked
    when the name is resolved; a proxy, when set, is trusted with the egress instead)."""
    proxied = bool(urllib.request.getproxies())
    resolver = None if allow_private or proxied else PublicOnlyResolver(DefaultResolver())
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, resolver=resolver),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=proxied,
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
