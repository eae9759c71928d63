"""The OSC-over-UDP transport's pieces that need no receiver: command-line targets."""

from __future__ import annotations

import pytest

from facecast.bridges.osc_udp import parse_host_port
from facecast.bridges.vmc import PERFORMER_PORT


@pytest.mark.parametrize("text, expected", [
    (None, ("127.0.0.1", PERFORMER_PORT)),
    ("", ("127.0.0.1", PERFORMER_PORT)),
    ("39540", ("127.0.0.1", 39540)),
    ("192.168.1.5:39539", ("192.168.1.5", 39539)),
    ("studio-pc", ("studio-pc", PERFORMER_PORT)),
    (":39541", ("127.0.0.1", 39541)),
    ("[::1]:39539", ("::1", 39539)),
    ("::1", ("::1", PERFORMER_PORT)),
])
def test_parse_host_port(text, expected):
    assert parse_host_port(text, "127.0.0.1", PERFORMER_PORT) == expected


@pytest.mark.parametrize("text, message", [
    ("0", "port must be a number from 1 to 65535"),
    ("70000", "port must be a number from 1 to 65535"),
    ("host:abc", "port must be a number from 1 to 65535"),
    ("host:\u00b2", "port must be a number from 1 to 65535"),
    ("host:", "missing port"),
    ("[::1", "missing ']'"),
    ("[::1]x", "expected ':PORT'"),
    ("my host:1", "must not contain spaces"),
])
def test_parse_host_port_errors_are_one_line(text, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_host_port(text, "127.0.0.1", PERFORMER_PORT)
    assert "\n" not in str(info.value)
