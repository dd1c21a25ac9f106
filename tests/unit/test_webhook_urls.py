"""The webhook URL policy (docs/RELIABILITY.md, Security): http(s) only, no credentials in the
URL, and with MEDIACDR_WEBHOOK_ALLOW_PRIVATE=false no address inside the network."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from click.testing import CliRunner

from services.cli import main
from services.core.webhooks.urls import InvalidWebhookUrl, check_webhook_url
from services.webhooks.http import PublicOnlyResolver

#: A fake resolver: names of this test only.
NAMES = {
    "hooks.example.com": ["93.184.215.14"],
    "internal.example.com": ["10.1.2.3"],
    "mixed.example.com": ["93.184.215.14", "127.0.0.1"],
    "v6.example.com": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
}


def resolve(host: str) -> Iterable[str]:
    return NAMES.get(host, [])


def check(url: str, *, allow_private: bool = False) -> str:
    return check_webhook_url(url, allow_private=allow_private, resolve=resolve)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/cdr",
        "http://hooks.example.com:8080/cdr?x=1",
        "HTTPS://hooks.example.com/",
        "https://93.184.215.14/cdr",
        "https://v6.example.com/",
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:8443/",
    ],
)
def test_public_http_urls_are_accepted(url: str) -> None:
    assert check(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://hooks.example.com/", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("hooks.example.com/cdr", "http:// or https://"),
        ("https:///cdr", "needs a host"),
        ("https://user:pw@hooks.example.com/", "user:password@"),
        ("https://token@hooks.example.com/", "user:password@"),
        ("https://hooks.example.com:99999/", "not a URL"),
        ("https://hooks.example.com/a b", "without spaces"),
        ("https://hooks.example.com/\r\nX-Injected: 1", "without spaces"),
        ("https://hooks.example.com/" + "a" * 2048, "2048"),
    ],
)
def test_what_is_never_a_webhook_url(url: str, why: str) -> None:
    for allow_private in (True, False):
        with pytest.raises(InvalidWebhookUrl, match=why):
            check(url, allow_private=allow_private)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",  # resolves to nothing here: refused as unknown
        "http://10.0.0.5/",
        "http://172.16.3.4/",
        "http://192.168.1.10/",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://224.0.0.1/",
        "https://internal.example.com/",
        "https://mixed.example.com/",  # one private address is enough
        "https://unknown.example.com/",
    ],
)
def test_private_addresses_are_refused_when_asked(url: str) -> None:
    with pytest.raises(InvalidWebhookUrl):
        check(url)
    if "unknown" not in url and "localhost" not in url:
        assert check(url, allow_private=True) == url


def test_the_cli_refuses_before_touching_the_database() -> None:
    """`mediacdr webhooks add` checks the URL first (no database is needed to refuse)."""
    runner = CliRunner()
    env = {"MEDIACDR_DATABASE_URL": "sqlite:////nonexistent/dir/never.db"}
    refused = runner.invoke(main, ["webhooks", "add", "ftp://hooks.example.com/"], env=env)
    assert refused.exit_code == 2 and "http:// or https://" in refused.output
    private = runner.invoke(
        main,
        ["webhooks", "add", "http://10.1.2.3/hook"],
        env=env | {"MEDIACDR_WEBHOOK_ALLOW_PRIVATE": "false"},
    )
    assert private.exit_code == 2 and "not a public address" in private.output


class _Answers(AbstractResolver):
    """A resolver that answers from a table (a small fake of DNS)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.table[host]
        ]

    async def close(self) -> None:
        return None


def test_at_send_time_only_public_addresses_are_connected_to() -> None:
    resolver = PublicOnlyResolver(
        _Answers({"mixed.example": ["10.0.0.7", "93.184.216.34"], "inside.example": ["::1"]})
    )
    kept = asyncio.run(resolver.resolve("mixed.example", 443))
    assert [r["host"] for r in kept] == ["93.184.216.34"]
    with pytest.raises(OSError, match="no public address"):
        asyncio.run(resolver.resolve("inside.example", 443))
