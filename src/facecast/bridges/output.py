"""`Output`: what every bridge is to the live daemon.

The daemon hands each frame to every enabled output from its frame loop, so an
output's `send` must not block (queue, keep only the latest frame, or drop) and
should raise only when the frame could not be handed over at all; the daemon
logs such failures once per outage and keeps the other outputs running.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from facecast.motion import MotionFrame


@runtime_checkable
class Output(Protocol):
    """One destination for frames.

    `name` keys the output in logs and ``/status``; `needs_image` says whether
    it wants the rendered picture (the daemon renders only when one does, and
    passes None to the others). An output that needs pictures only while someone
    reads them (a server with no viewer connected) may also have a `wants_image`
    property: while it is False the daemon skips rendering for it and passes None.
    """

    name: str
    needs_image: bool

    def send(self, frame: MotionFrame, image: np.ndarray | None) -> None:
        """Take one frame (and its RGB/RGBA uint8 picture when `needs_image`); never blocks on a receiver."""
        ...

    def close(self) -> None:
        """Stop sending and release the connection, socket or device."""
        ...
