"""OSC over UDP: the fire-and-forget transport, and the two outputs built on it (VMC, VRChat).

**Sending never hurts the frame loop.** UDP has no connection: a receiver may
start, stop or restart at any time. `UdpOscSender.send` never blocks and never
raises; it counts what it could not send and logs an outage once, and its end,
rather than once per frame. While an outage lasts (a receiver that refuses:
ICMP port unreachable, reported as ECONNREFUSED on the connected socket's next
send) its reason is the sender's current `error`, which `/status` shows until
packets flow again for `RECOVERY_S`.

`VmcSender` and `VrchatSender` are the `Output`s: a pure encoder
(`facecast.bridges.vmc`, `facecast.bridges.vrchat`) paired with this transport.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Sequence

import numpy as np

from facecast.bridges import vmc, vrchat
from facecast.bridges.osc import FrameEncoder
from facecast.bridges.vrchat_avatar import AvatarConfigSource
from facecast.motion import MotionFrame

__all__ = ["RECOVERY_S", "OscOutput", "UdpOscSender", "VmcSender", "VrchatSender", "parse_host_port"]

#: Seconds of sending without a single error after which an outage counts as over.
#: On loopback a closed port answers every other datagram with ICMP "port
#: unreachable", so a short error-free stretch means a receiver is back.
RECOVERY_S = 1.0
#: Seconds between two lookups of a receiver's host name that did not resolve.
RESOLVE_RETRY_S = 10.0


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
        #: Why sending fails now (one line), None while packets flow; `last_error` keeps the latest reason.
        self.error: str | None = None
        self.last_error: str | None = None
        self._log = logging.getLogger(f"facecast.bridges.{name}")
        self._sock: socket.socket | None = None
        self._address: tuple = ()
        self._connected = False
        self._closed = False
        self._down = False
        self._last_failure = 0.0
        self._lock = threading.Lock()
        self._closing = threading.Event()   # wakes the background lookup at `close`
        try:
            self._open(socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0])
        except UnicodeError as exc:   # not a host name at all
            raise ValueError(f"cannot resolve {host!r}: {exc}") from None
        except OSError as exc:
            # A name that does not resolve yet (the streaming PC's `.local` name before its network is up, a DNS
            # outage) is an outage like a receiver that is not running: logged once, retried in the background
            # (a lookup can take seconds; the frame loop must not wait for it).
            self.error = self.last_error = f"cannot resolve {host}: {exc.strerror or exc}"
            self._down, self._last_failure = True, time.monotonic()
            self._log.warning("cannot resolve %s (%s); will keep trying every %g s", host, exc.strerror or exc,
                              RESOLVE_RETRY_S)
            threading.Thread(target=self._resolve_later, name=f"facecast-{name}-resolve", daemon=True).start()

    def _open(self, resolved: tuple) -> None:
        family, kind, proto, _, address = resolved
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        with self._lock:
            if self._closed:
                sock.close()
                return
            self._address = address
            self._sock = sock

    def _resolve_later(self) -> None:
        while not self._closing.wait(RESOLVE_RETRY_S):
            try:
                resolved = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
                self._open(resolved)
            except (OSError, UnicodeError) as exc:
                self.error = self.last_error = f"cannot resolve {self.host}: {exc}"
                continue
            self._log.info("resolved %s to %s", self.host, resolved[4][0])
            return

    def send(self, packets: Sequence[bytes]) -> None:
        """Send each datagram now or drop it; never blocks, never raises."""
        for packet in packets:
            if self._closed or self._sock is None:   # closed, or the host name not resolved yet
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
                    self.error = None
                    self._log.info("sending to %s:%d again (%d packets dropped so far)",
                                   self.host, self.port, self.failed)

    @property
    def down(self) -> bool:
        """Whether an outage is going on (a failure less than `RECOVERY_S` before the last success)."""
        return self._down

    def _failure(self, exc: OSError) -> None:
        self.failed += 1
        self._last_failure = time.monotonic()
        reason = f"cannot send to {self.host}:{self.port}: {exc.strerror or exc}"
        if isinstance(exc, ConnectionRefusedError):
            reason += " (is the receiver running?)"
        self.error = self.last_error = reason
        if not self._down:
            self._down = True
            self._log.warning("cannot send to %s:%d (%s); will keep trying. Is the receiver running?",
                              self.host, self.port, exc.strerror or exc)

    def close(self) -> None:
        """Release the socket; later sends only count as failed."""
        with self._lock:
            self._closed = True
            self._closing.set()
            if self._sock is not None:
                self._sock.close()


class OscOutput:
    """A pure encoder paired with a UDP transport: the shape of every OSC output.

    A missing or restarting receiver never stops the caller: sending is
    non-blocking and never raises.
    """

    name = "osc"
    needs_image = False

    def __init__(self, encoder: FrameEncoder, host: str, port: int) -> None:
        self.encoder = encoder
        self.transport = UdpOscSender(host, port, name=self.name)
        self.frames_failed = 0

    def send(self, frame: MotionFrame, image: np.ndarray | None = None) -> None:
        """Encode and send one frame now (the image is not used)."""
        failed = self.transport.failed
        self.transport.send(self.encoder.encode(frame))
        if self.transport.failed != failed:
            self.frames_failed += 1

    @property
    def counters(self) -> dict[str, object]:
        """For ``/status``: packets sent and dropped, frames not (fully) sent, the current and latest error."""
        transport = self.transport
        return {"target": f"{transport.host}:{transport.port}", "packets_sent": transport.sent,
                "packets_failed": transport.failed, "errors": self.frames_failed,
                "error": transport.error if transport.down else None, "last_error": transport.last_error}

    def close(self) -> None:
        """Release the socket."""
        self.transport.close()


class VmcSender(OscOutput):
    """Send frames to a VMC receiver over UDP; a missing or restarting receiver never stops the caller."""

    name = "vmc"

    def __init__(self, host: str = vmc.DEFAULT_HOST, port: int = vmc.PERFORMER_PORT, names: str = "vrm0",
                 role: str = "auto", bone_offsets: vmc.BoneOffsets = vmc.BONE_OFFSETS) -> None:
        if role == "auto":
            role = vmc.role_for_port(port)
        super().__init__(vmc.VmcEncoder(names, role=role, bone_offsets=bone_offsets), host, port)


class VrchatSender(OscOutput):
    """Send frames to VRChat over UDP; VRChat not running (or restarting) never stops the caller."""

    name = "vrchat"

    def __init__(self, host: str = vrchat.DEFAULT_HOST, port: int = vrchat.DEFAULT_PORT,
                 prefix: str = vrchat.DEFAULT_PREFIX, *, binary: dict[str, int] | None = None,
                 native_eyes: bool = True, avatars: AvatarConfigSource | None = None) -> None:
        super().__init__(vrchat.VrchatEncoder(prefix, binary=binary, native_eyes=native_eyes), host, port)
        #: Where the worn avatar's parameter list comes from (None: send every parameter).
        self.avatars = avatars

    def send(self, frame: MotionFrame, image: np.ndarray | None = None) -> None:
        """Follow the avatar's parameter list when it changes, then encode and send the frame."""
        if self.avatars is not None:
            avatar = self.avatars.poll()
            if avatar is not None:
                report = self.encoder.set_avatar(avatar)
                if report is not None:
                    logging.getLogger("facecast.bridges.vrchat").info("%s", report.summary())
        super().send(frame, image)

    def close(self) -> None:
        """Switch the avatar's face-tracking flags off, then release the socket."""
        self.transport.send(self.encoder.farewell())
        super().close()
