"""What every frame gets before it leaves facecast: an optional visible badge, then the invisible mark.

One object per run (a render, a live session) so all its frames carry the
same per-run id; the render and the live daemon both call `Provenance.apply`
on each frame right before their outputs see it.
"""

from __future__ import annotations

import cv2
import numpy as np

from facecast.errors import InputError
from facecast.provenance.watermark import Payload, Watermarker

DEFAULT_BADGE = "AI-generated"
#: Badge text height as a fraction of the frame height.
_BADGE_HEIGHT = 0.035
_BADGE_OPACITY = 0.6


class Badge:
    """A small "AI-generated" label in the bottom-right corner, prepared once per frame shape."""

    def __init__(self, text: str = DEFAULT_BADGE) -> None:
        text = text.strip()
        if not text or not text.isprintable() or not text.isascii():
            raise InputError("the badge text must be printable ASCII, e.g. 'AI-generated'")
        self.text = text
        self._cache: dict[tuple[int, ...], tuple[tuple[slice, slice], np.ndarray, np.ndarray]] = {}

    def draw(self, image: np.ndarray) -> np.ndarray:
        """Blend the badge into `image` (H, W, 3|4) uint8 in place; on RGBA it is made opaque enough to show."""
        where, colour, alpha = self._prepared(image.shape)
        region = image[where]
        rgb = region[:, :, :3].astype(np.float32)
        rgb += alpha[:, :, None] * (colour - rgb)
        region[:, :, :3] = np.rint(rgb).astype(np.uint8)
        if image.shape[2] == 4:
            region[:, :, 3] = np.maximum(region[:, :, 3], np.rint(alpha * 255).astype(np.uint8))
        return image

    def _prepared(self, shape: tuple[int, ...]) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
        if shape not in self._cache:
            height, width = shape[:2]
            font = cv2.FONT_HERSHEY_SIMPLEX
            scale = max(0.3, _BADGE_HEIGHT * height / 22.0)
            thickness = max(1, round(scale * 1.5))
            (text_w, text_h), baseline = cv2.getTextSize(self.text, font, scale, thickness)
            pad = max(2, text_h // 3)
            box_w, box_h = min(width, text_w + 2 * pad), min(height, text_h + baseline + 2 * pad)
            margin = max(2, height // 60)
            x0, y0 = max(0, width - box_w - margin), max(0, height - box_h - margin)
            ink = np.zeros((box_h, box_w), dtype=np.uint8)
            cv2.putText(ink, self.text, (pad, pad + text_h), font, scale, 255, thickness, cv2.LINE_AA)
            text_alpha = ink.astype(np.float32) / 255.0
            # dark translucent box, white text over it
            colour = np.zeros((box_h, box_w, 3), dtype=np.float32)
            colour += text_alpha[:, :, None] * 255.0
            alpha = np.maximum(_BADGE_OPACITY, text_alpha).astype(np.float32)
            self._cache[shape] = ((slice(y0, y0 + box_h), slice(x0, x0 + box_w)), colour, alpha)
        return self._cache[shape]


class Provenance:
    """Badge (when asked for) then watermark (always), in place, for one run."""

    def __init__(self, badge_text: str | None = None, payload: Payload | None = None) -> None:
        self.watermark = Watermarker(payload)
        self.badge = Badge(badge_text) if badge_text else None

    @property
    def run_id(self) -> str:
        return self.watermark.payload.run_hex

    def apply(self, image: np.ndarray, t: float) -> np.ndarray:
        """Stamp the frame shown at `t` seconds; returns the same array."""
        if self.badge is not None:
            self.badge.draw(image)
        return self.watermark.embed(image, t)
