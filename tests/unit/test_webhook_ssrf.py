"""SSRF vetting of webhook URLs. The resolver is a fake: no test does real DNS."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx
import pytest

from shared.errors import InvalidWebhookUrl
from shared.webhooks.ssrf import Resolver, check_url, refusal_reason, validate_url_syntax

PUBLIC = "93.184.216.34"
DNS = {
    "localhost": ["127.0.0.1", "::1"],
    "internal.example": ["10.0.0.1"],
    "router.example": ["192.168.1.1"],
    "cgnat.example": ["100.64.0.1"],
    "mixed.example": [PUBLIC, "10.0.0.1"],
    "example.com": [PUBLIC],
    "v6.example.com": ["2606:2800:220:1:248:1893:25c8:1946"],
}


async def fake_resolve(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise OSError(f"unknown host {host}")
    return DNS[host]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "loopback"),
        ("http://localhost/", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://100.100.100.200/", "cloud metadata"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("http://[64:ff9b::7f00:1]/", "loopback"),
        ("http://[2002:c0a8:101::1]/", "private"),
        ("http://internal.example:8080/hook", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://router.example/", "private"),
        ("http://100.64.0.1/", "shared"),
        ("http://cgnat.example/", "shared"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://mixed.example/", "private"),
    ],
)
async def test_refuses_non_public_addresses(url: str, reason: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match="not allowed") as refused:
        await check_url(url, allow_private=False, resolve=fake_resolve)
    host = httpx.URL(url).host
    if host in DNS:  # a name: the refusal says neither what it resolved to nor what that is
        assert all(address not in str(refused.value) for address in DNS[host])
        assert reason not in str(refused.value)
    else:  # an address the caller wrote: naming what kind it is tells them nothing new
        assert reason in str(refused.value)


def refused_name(host: str) -> str:
    return f"webhook_url host {host!r} is not allowed: it does not resolve to a public address"


@pytest.mark.parametrize("host", ["internal.example", "mixed.example", "localhost"])
async def test_a_refusal_does_not_reveal_what_a_host_resolves_to(host: str) -> None:
    with pytest.raises(InvalidWebhookUrl) as refused:
        await check_url(f"https://{host}/hook", allow_private=False, resolve=fake_resolve)
    message = str(refused.value)
    assert message == refused_name(host)
    assert not any(address in message for address in DNS[host])


async def slow_resolve(host: str, port: int) -> list[str]:
    await asyncio.sleep(60)
    return []


async def empty_resolve(host: str, port: int) -> list[str]:
    return []


@pytest.mark.parametrize(
    "resolve", [fake_resolve, empty_resolve, slow_resolve], ids=["error", "empty", "timeout"]
)
async def test_a_name_that_does_not_resolve_is_refused_like_an_internal_one(
    resolve: Resolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Otherwise the refusal tells an outsider which internal names exist."""
    monkeypatch.setattr("shared.webhooks.ssrf.RESOLVE_TIMEOUT_S", 0.05)
    with pytest.raises(InvalidWebhookUrl) as missing:
        await check_url("https://nowhere.invalid/", allow_private=False, resolve=resolve)
    with pytest.raises(InvalidWebhookUrl) as internal:
        await check_url("https://localhost/", allow_private=False, resolve=fake_resolve)
    assert str(missing.value) == refused_name("nowhere.invalid")
    assert str(internal.value) == refused_name("localhost")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://x/", "http or https"),
        ("not a url", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("http:///path-only", "host"),
        ("http://user:pw@example.com/", "username or password"),
        ("http://user@example.com/", "username or password"),
        ("http://example.com:99999/", "port"),
        ("http://example.com:0/", "port"),
        ("http://[::1/", "valid URL"),
    ],
)
async def test_refuses_malformed_urls(url: str, reason: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match=reason):
        validate_url_syntax(url)
    with pytest.raises(InvalidWebhookUrl, match=reason):
        await check_url(url, allow_private=True, resolve=fake_resolve)


async def test_with_allow_private_a_host_that_does_not_resolve_says_so() -> None:
    """Nothing internal is hidden then, so the operator gets the plain reason."""
    with pytest.raises(InvalidWebhookUrl, match=r"'nowhere\.invalid' does not resolve"):
        await check_url("https://nowhere.invalid/", allow_private=True, resolve=fake_resolve)


async def test_allows_a_public_host_and_returns_its_addresses() -> None:
    addresses = await check_url(
        "https://example.com/hooks?x=1", allow_private=False, resolve=fake_resolve
    )
    assert addresses == [ipaddress.ip_address(PUBLIC)]


async def test_allows_public_ipv6_and_mapped_public_ipv4() -> None:
    v6 = await check_url("https://v6.example.com/", allow_private=False, resolve=fake_resolve)
    assert v6 == [ipaddress.ip_address(DNS["v6.example.com"][0])]
    mapped = await check_url(f"http://[::ffff:{PUBLIC}]:8443/", allow_private=False)
    assert mapped == [ipaddress.ip_address(f"::ffff:{PUBLIC}")]


async def test_allow_private_skips_the_address_checks() -> None:
    assert await check_url("http://127.0.0.1:9000/", allow_private=True) == [
        ipaddress.ip_address("127.0.0.1")
    ]
    localhost = await check_url("http://localhost/", allow_private=True, resolve=fake_resolve)
    assert [str(a) for a in localhost] == ["127.0.0.1", "::1"]


async def test_ip_literals_are_not_resolved() -> None:
    async def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError("an IP literal must not be resolved")

    await check_url(f"http://{PUBLIC}/", allow_private=False, resolve=no_dns)


def test_validate_url_syntax_accepts_http_and_https() -> None:
    assert validate_url_syntax("https://example.com:8443/a").port == 8443
    assert validate_url_syntax("HTTP://Example.com/").scheme == "http"


def test_public_addresses_have_no_refusal_reason() -> None:
    for address in (PUBLIC, "8.8.8.8", "2001:4860:4860::8888", "64:ff9b::808:808"):
        assert refusal_reason(ipaddress.ip_address(address)) is None
