"""Shared OSC plumbing for the UDP bridges (VMC, VRChat): typed packets and a sender that never fails the caller.

Two rules every OSC bridge must follow live here once:

* **Types are explicit.** python-osc guesses a type from the Python value and
  encodes ``int`` as ``i``; VMC and VRChat receivers silently *ignore* a
  message whose argument has the wrong type. `osc_bundle` therefore sends
  every number as a 32-bit float (``f``) unless it is wrapped in `OscInt`.
* **Sending never hurts the frame loop.** UDP has no connection: a receiver
  may start, stop or restart at any time. `UdpOscSender.send` never blocks and
  never raises; it counts what it could not send and logs an outage once, and
  its end, rather than once per frame.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from typing import TYPE_CHECKING, Iterable, Protocol, Sequence

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

if TYPE_CHECKING:
    from facecast.motion import MotionFrame

#: Seconds of sending without a single error after which an outage counts as over.
#: On loopback a closed port answers every other datagram with ICMP "port
#: unreachable", so a short error-free stretch means a receiver is back.
RECOVERY_S = 1.0

#: Characters OSC reserves for address patterns; they may not appear in a sent address.
OSC_RESERVED = frozenset(" #*,?[]{}")

#: Largest UDP payload that fits one Ethernet frame (1500 - 20 IP - 8 UDP bytes).
MAX_DATAGRAM = 1472
_BUNDLE_HEADER = 16  # "#bundle\0" + 8-byte time tag; each element adds a 4-byte size


class OscInt(int):
    """Marks an argument to be sent as OSC int32 (``i``); every other number is sent as float."""


OscArg = str | float | int
OscMessageSpec = tuple[str, Sequence[OscArg]]


def _message(address: str, args: Sequence[OscArg]) -> OscMessage:
    message = OscMessageBuilder(address=address)
    for arg in args:
        if isinstance(arg, str):
            message.add_arg(arg, OscMessageBuilder.ARG_TYPE_STRING)
        elif isinstance(arg, OscInt):
            message.add_arg(int(arg), OscMessageBuilder.ARG_TYPE_INT)
        elif isinstance(arg, bool):
            raise TypeError(f"{address}: send booleans as numbers explicitly")
        else:
            value = float(arg)
            message.add_arg(value if math.isfinite(value) else 0.0, OscMessageBuilder.ARG_TYPE_FLOAT)
    return message.build()


def _bundle(messages: Iterable[OscMessage]) -> bytes:
    builder = OscBundleBuilder(IMMEDIATELY)
    for message in messages:
        builder.add_content(message)
    return builder.build().dgram


def osc_bundle(messages: Iterable[OscMessageSpec]) -> bytes:
    """One OSC bundle (immediate time tag) holding `messages` in order, as a datagram.

    Strings go as ``s``, `OscInt` as ``i``, any other number as ``f``
    (non-finite numbers become 0.0: a NaN would break an avatar's pose).
    """
    return _bundle(_message(address, args) for address, args in messages)


def osc_bundles(messages: Iterable[OscMessageSpec], max_bytes: int = MAX_DATAGRAM) -> list[bytes]:
    """`messages` in order, packed into as few bundles of at most `max_bytes` each as possible.

    Keeps datagrams within one Ethernet frame so a receiver on another machine
    (e.g. a standalone headset on Wi-Fi) never depends on IP fragments arriving.
    """
    out: list[bytes] = []
    batch: list[OscMessage] = []
    size = _BUNDLE_HEADER
    for address, args in messages:
        message = _message(address, args)
        if batch and size + 4 + message.size > max_bytes:
            out.append(_bundle(batch))
            batch, size = [], _BUNDLE_HEADER
        batch.append(message)
        size += 4 + message.size
    if batch:
        out.append(_bundle(batch))
    return out


def clamp(value: float, low: float, high: float) -> float:
    """`value` limited to [low, high]; NaN counts as 0 so a bad coefficient cannot poison a receiver."""
    if math.isnan(value):
        value = 0.0
    return low if value < low else high if value > high else value


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def parse_host_port(text: str | None, default_host: str, default_port: int) -> tuple[str, int]:
    """Parse a command-line target: ``""``, ``PORT``, ``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT``.

    Missing parts take the defaults, so ``--vmc`` alone, ``--vmc 39540`` and
    ``--vmc 192.168.1.5:39539`` all work. Raises ValueError with a one-line
    message the CLI can print as is.
    """
    raw = (text or "").strip()
    if not raw:
        return default_host, default_port
    host, port_text = raw, ""
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise ValueError(f"{raw!r}: missing ']' after the IPv6 address")
        host, rest = raw[1:end], raw[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{raw!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else ""
        if rest and not port_text:
            raise ValueError(f"{raw!r}: missing port after ':'")
    elif _is_number(raw):
        host, port_text = "", raw
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
        if not port_text:
            raise ValueError(f"{raw!r}: missing port after ':'")
    # more than one ':' without brackets: a bare IPv6 address, default port
    if port_text:
        if not _is_number(port_text) or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{raw!r}: port must be a number from 1 to 65535")
    if any(c.isspace() for c in host):
        raise ValueError(f"{raw!r}: host must not contain spaces")
    return host or default_host, int(port_text) if port_text else default_port


class UdpOscSender:
    """Fire-and-forget UDP transport for OSC datagrams.

    The socket is non-blocking and *connected*, so on loopback the kernel
    reports "nobody listening" (ECONNREFUSED) on a later send: that is how the
    sender notices an outage and its end. Every failure is counted in
    `failed`, logged once per outage, and never raised. Call `send` from one
    thread (the frame loop).
    """

    def __init__(self, host: str, port: int, name: str) -> None:
        self.host, self.port = host, port
        self.sent = 0
        self.failed = 0
        self._log = logging.getLogger(f"facecast.bridges.{name}")
        try:
            family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"cannot resolve {host!r}: {exc}") from None
        self._sock = socket.socket(family, kind, proto)
        self._sock.setblocking(False)
        self._address = address
        self._connected = False
        self._closed = False
        self._down = False
        self._last_failure = 0.0

    def send(self, packets: Sequence[bytes]) -> None:
        """Send each datagram now or drop it; never blocks, never raises."""
        for packet in packets:
            if self._closed:
                self.failed += 1
                continue
            try:
                if not self._connected:  # connect() can fail too, e.g. no route while a network is down
                    self._sock.connect(self._address)
                    self._connected = True
                self._sock.send(packet)
            except OSError as exc:  # refused, unreachable, buffer full (BlockingIOError), too big ...
                self._failure(exc)
            else:
                self.sent += 1
                if self._down and time.monotonic() - self._last_failure >= RECOVERY_S:
                    self._down = False
                    self._log.info("sending to %s:%d again (%d packets dropped so far)",
                                   self.host, self.port, self.failed)

    def _failure(self, exc: OSError) -> None:
        self.failed += 1
        self._last_failure = time.monotonic()
        if not self._down:
            self._down = True
            self._log.warning("cannot send to %s:%d (%s); will keep trying. Is the receiver running?",
                              self.host, self.port, exc.strerror or exc)

    def close(self) -> None:
        """Release the socket; later sends only count as failed."""
        self._closed = True
        self._sock.close()


class FrameEncoder(Protocol):
    def encode(self, frame: "MotionFrame") -> list[bytes]: ...


class OscBridge:
    """A pure encoder paired with a UDP transport: the shape of every OSC output.

    A missing or restarting receiver never stops the caller: sending is
    non-blocking and never raises.
    """

    def __init__(self, encoder: FrameEncoder, host: str, port: int, name: str) -> None:
        self.encoder = encoder
        self.transport = UdpOscSender(host, port, name=name)

    def send(self, frame: "MotionFrame") -> None:
        """Encode and send one frame now."""
        self.transport.send(self.encoder.encode(frame))

    def close(self) -> None:
        """Release the socket."""
        self.transport.close()
