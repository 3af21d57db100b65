"""Message formatting (pure): --binary-display and --json, and -p parsing."""

from __future__ import annotations

import pytest

from wsgate.cat.connector import connect_request
from wsgate.cat.display import BinaryDisplay, format_binary, pretty_json
from wsgate.cat.options import CatError, protocol_version


def test_binary_display() -> None:
    data = b"\x00\xff ok"
    assert format_binary(data, BinaryDisplay.TEXT) == "\x00\ufffd ok"  # wscat's rule
    assert format_binary(data, BinaryDisplay.HEX) == "00 ff 20 6f 6b"
    assert format_binary(data, BinaryDisplay.BASE64) == "AP8gb2s="
    assert bytes.fromhex(format_binary(data, BinaryDisplay.HEX)) == data


def test_pretty_json_keeps_numbers_keys_and_order() -> None:
    text = '{"b": [1, 2.50, 1e5, {}], "a": {"x": null, "x": true}, "s": "é\\n", "n": []}'
    assert pretty_json(text) == (
        "{\n"
        '  "b": [\n'
        "    1,\n"
        "    2.50,\n"
        "    1e5,\n"
        "    {}\n"
        "  ],\n"
        '  "a": {\n'
        '    "x": null,\n'
        '    "x": true\n'
        "  },\n"
        '  "s": "é\\n",\n'
        '  "n": []\n'
        "}"
    )


@pytest.mark.parametrize("text", ["42", '"text"', "{broken", "[1,]", "plain words", "[" * 5000])
def test_pretty_json_leaves_the_rest_alone(text: str) -> None:
    assert pretty_json(text) is None


@pytest.mark.parametrize(("text", "version"), [(None, 13), ("", 13), ("8", 8), (" 13 ", 13)])
def test_protocol_version(text: str | None, version: int) -> None:
    assert protocol_version(text) == version


@pytest.mark.parametrize(("text", "shown"), [("7", "7"), ("abc", "NaN"), ("8.5", "8.5")])
def test_unsupported_protocol_version(text: str, shown: str) -> None:
    with pytest.raises(CatError) as info:
        protocol_version(text)
    assert info.value.message == (
        f"Unsupported protocol version: {shown} (supported versions: 8, 13)"
    )


def test_connect_request_is_https_proxy_agents() -> None:
    import urllib.parse

    proxy = urllib.parse.urlsplit("http://u%40x:p@proxy:3128")
    assert connect_request("::1", 443, proxy) == (
        b"CONNECT [::1]:443 HTTP/1.1\r\n"
        b"Proxy-Authorization: Basic dUB4OnA=\r\n"
        b"Host: [::1]:443\r\n"
        b"Proxy-Connection: close\r\n\r\n"
    )
