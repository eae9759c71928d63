"""OSC wire format for the UDP bridges (VMC, VRChat): typed messages and bundles, as datagrams (pure).

**Types are explicit.** python-osc guesses a type from the Python value and
encodes ``int`` as ``i``; VMC and VRChat receivers silently *ignore* a message
whose argument has the wrong type. `osc_bundle` therefore sends every number
as a 32-bit float (``f``) unless it is wrapped in `OscInt`; a Python ``bool``
is an OSC 1.1 boolean (type tag ``T`` or ``F``, no argument bytes), which is
what VRChat's Bool avatar parameters take.

No sockets here: `facecast.bridges.osc_udp` sends what these functions build.
"""

from __future__ import annotations

import math
from typing import Iterable, Protocol, Sequence

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from facecast.motion import MotionFrame

#: Characters OSC reserves for address patterns; they may not appear in a sent address.
OSC_RESERVED = frozenset(" #*,?[]{}")

#: Largest UDP payload that fits one Ethernet frame (1500 - 20 IP - 8 UDP bytes).
MAX_DATAGRAM = 1472
_BUNDLE_HEADER = 16  # "#bundle\0" + 8-byte time tag; each element adds a 4-byte size


class OscInt(int):
    """Marks an argument to be sent as OSC int32 (``i``); every other number is sent as float."""


OscArg = str | float | int | bool
OscMessageSpec = tuple[str, Sequence[OscArg]]


def osc_message(address: str, args: Sequence[OscArg]) -> OscMessage:
    """One OSC message: ``str`` -> ``s``, `OscInt` -> ``i``, ``bool`` -> ``T``/``F``, any other number -> ``f``."""
    message = OscMessageBuilder(address=address)
    for arg in args:
        if isinstance(arg, str):
            message.add_arg(arg, OscMessageBuilder.ARG_TYPE_STRING)
        elif isinstance(arg, bool):  # before OscInt/int: bool is an int subclass
            message.add_arg(arg, OscMessageBuilder.ARG_TYPE_TRUE if arg else OscMessageBuilder.ARG_TYPE_FALSE)
        elif isinstance(arg, OscInt):
            message.add_arg(int(arg), OscMessageBuilder.ARG_TYPE_INT)
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

    Strings go as ``s``, `OscInt` as ``i``, booleans as ``T``/``F``, any other
    number as ``f`` (non-finite numbers become 0.0: a NaN would break an avatar's pose).
    """
    return _bundle(osc_message(address, args) for address, args in messages)


def osc_bundles(messages: Iterable[OscMessageSpec], max_bytes: int = MAX_DATAGRAM) -> list[bytes]:
    """`messages` in order, packed into as few bundles of at most `max_bytes` each as possible.

    Keeps datagrams within one Ethernet frame so a receiver on another machine
    (e.g. a standalone headset on Wi-Fi) never depends on IP fragments arriving.
    Each bundle is complete on its own (receivers such as uOSC handle the
    messages of a bundle like consecutive messages), and order is kept: a
    closing message such as ``/VMC/Ext/Blend/Apply`` lands in the last bundle.
    A single message larger than `max_bytes` raises ValueError.
    """
    out: list[bytes] = []
    batch: list[OscMessage] = []
    size = _BUNDLE_HEADER
    for address, args in messages:
        message = osc_message(address, args)
        if _BUNDLE_HEADER + 4 + message.size > max_bytes:
            raise ValueError(f"{address}: one message of {message.size} bytes cannot fit a {max_bytes}-byte datagram")
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


class FrameEncoder(Protocol):
    """A protocol's pure half: one motion frame -> the datagrams to send for it."""

    def encode(self, frame: MotionFrame) -> list[bytes]: ...
