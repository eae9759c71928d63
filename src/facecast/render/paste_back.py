"""Paste-back: the animated square returned into the whole picture (framing `full`), with no visible seam.

The square is cut from the backdrop at whole pixels, and the renderer leaves
every pixel outside its moving box (and the head mask fades out before the
square's edge) unchanged, so a frame differs from the backdrop only inside.
A narrow feathered band along the square's inner sides still blends the two,
so motion that does reach the edge fades into the picture instead of ending
at a line. Per frame that is one copy of the backdrop and four thin strips.
"""

from __future__ import annotations

import numpy as np

#: Weights are integers out of this, so the band blends in integer arithmetic.
ONE = 256


class PasteBack:
    """Returns each rendered square pasted into a copy of the backdrop at (x, y), feathered over `feather` px."""

    def __init__(self, backdrop: np.ndarray, placement: tuple[int, int], side: int, channels: int,
                 feather: int) -> None:
        if channels == 4 and backdrop.shape[2] == 3:  # an alpha given to the square alone: the rest is opaque
            backdrop = np.dstack([backdrop, np.full(backdrop.shape[:2], 255, np.uint8)])
        elif channels == 3 and backdrop.shape[2] == 4:
            backdrop = backdrop[..., :3]
        self._backdrop = np.ascontiguousarray(backdrop)
        self._x, self._y = placement
        self._side = side
        height, width = backdrop.shape[:2]
        # no band along a side where the square meets the picture's own edge: nothing to blend with there
        top, bottom, left, right = (self._y > 0, self._y + side < height, self._x > 0, self._x + side < width)
        self._band = band = max(1, min(feather, side // 4))
        ramp = np.minimum(np.arange(side) + 1, band) * ONE // band
        ones = np.full(side, ONE, np.int64)
        rows = np.minimum(ramp if top else ones, ramp[::-1] if bottom else ones)
        cols = np.minimum(ramp if left else ones, ramp[::-1] if right else ones)
        self._weight = np.minimum(rows[:, None], cols[None, :]).astype(np.uint16)[..., None]
        self._shape = (side, side, self._backdrop.shape[2])
        # the strips that blend: the top and bottom ones across, then the left and right ones between them
        inner = slice(band if top else 0, side - band if bottom else side)
        self._strips = [strip for strip, is_open in (
            ((slice(0, band), slice(0, side)), top), ((slice(side - band, side), slice(0, side)), bottom),
            ((inner, slice(0, band)), left), ((inner, slice(side - band, side)), right)) if is_open]
        under = self._backdrop[self._y:self._y + side, self._x:self._x + side]
        # per strip, precomputed: its weight and the backdrop's share of it
        self._blend = [(rows, cols, self._weight[rows, cols],
                        under[rows, cols].astype(np.uint16) * (ONE - self._weight[rows, cols]) + ONE // 2)
                       for rows, cols in self._strips]
        self._whole = (side, side) == (height, width)

    def __call__(self, square: np.ndarray) -> np.ndarray:
        if square.shape != self._shape:
            raise ValueError(f"expected a {self._shape} square to paste back, got {square.shape}")
        if self._whole:  # the square is the whole picture (a square picture)
            return square
        out = self._backdrop.copy()
        x, y, side = self._x, self._y, self._side
        out[y:y + side, x:x + side] = square
        placed = out[y:y + side, x:x + side]
        for rows, cols, weight, under in self._blend:
            placed[rows, cols] = ((square[rows, cols] * weight + under) >> 8).astype(np.uint8)
        return out
