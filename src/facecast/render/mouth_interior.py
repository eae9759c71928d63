"""A synthesised mouth interior for an opening mouth.

A warp can only stretch the pixels it has: opening a closed mouth would show
stretched lip skin. Inside the deformed inner-lip contour we paint a dark
cavity tinted by the portrait's own lip colour, a hint of upper teeth under the
upper lip and a tongue hint at the bottom, with an anti-aliased mask so the lips
stay on top. Only the small box around the mouth is computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facecast import face_regions as fr
from facecast.face_model import smoothstep

#: Inner-lip pairs (upper, lower) whose gap measures how open the mouth is.
_GAP_PAIRS = ((82, 87), (fr.UPPER_LIP_CENTER, fr.LOWER_LIP_CENTER), (312, 317))
#: The interior fades in between these extra openings (fractions of mouth width) beyond the portrait's own.
OPEN_START, OPEN_FULL = 0.01, 0.05
CAVITY_TINT = 0.28         # cavity = lip colour times this
TEETH_HEIGHT = 0.15        # of mouth width: visible crown height of the upper incisors
TEETH_MAX_SHARE = 0.45     # never more than this share of the local opening
TOOTH_SPACING = 0.11       # of mouth width
IVORY = np.array([0.93, 0.90, 0.84], np.float32)
TEETH_SKIN_TINT = 0.3      # teeth take this much of the portrait's skin colour, so they match its lighting
SMOOTHING_PASSES = 2       # Chaikin passes that round the 20-point inner-lip polygon
TONGUE_TINT = np.array([0.55, 0.35, 0.35], np.float32)   # the tongue: the lip colour, redder
GREY_SPREAD = 0.02         # a face whose pixels' channels differ by less than this on average is black and white
SUPERSAMPLE = 4            # the mask is drawn this many times larger, then area-averaged (clean anti-aliasing)
FILL_BITS = 4              # fillPoly's fractional bits for sub-pixel vertices


@dataclass
class Patch:
    """What to blend into the frame: colour (h, w, 3) in 0..255 and alpha (h, w) at rows y0.., cols x0..."""

    y0: int
    x0: int
    colour: np.ndarray
    alpha: np.ndarray


def _chaikin(polygon: np.ndarray, passes: int) -> np.ndarray:
    """Corner-cutting subdivision of a closed polygon: a smooth contour instead of a faceted one."""
    for _ in range(passes):
        following = np.roll(polygon, -1, axis=0)
        polygon = np.stack([0.75 * polygon + 0.25 * following, 0.25 * polygon + 0.75 * following], 1).reshape(-1, 2)
    return polygon


def _gap(points: np.ndarray) -> float:
    return float(np.mean([np.linalg.norm(points[a] - points[b]) for a, b in _GAP_PAIRS]))


class MouthInterior:
    """Paints the inside of the mouth for a portrait (colours taken from its lips and face)."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray) -> None:
        rgb = image[:, :, :3].astype(np.float32) / 255.0
        size = image.shape[0]
        lm = landmarks[:, :2]
        lips = np.zeros((size, size), np.uint8)
        cv2.fillPoly(lips, [np.round(lm[list(fr.LIPS_OUTER)]).astype(np.int32)], 1)
        cv2.fillPoly(lips, [np.round(lm[list(fr.LIPS_INNER)]).astype(np.int32)], 0)
        face = np.zeros((size, size), np.uint8)
        cv2.fillPoly(face, [np.round(lm[list(fr.FACE_OVAL)]).astype(np.int32)], 1)
        self.size = size
        self.lip_colour = rgb[lips > 0].mean(0) if lips.any() else np.array([0.6, 0.3, 0.3], np.float32)
        skin = rgb[face > 0].mean(0) if face.any() else np.full(3, 0.6, np.float32)
        teeth = (1 - TEETH_SKIN_TINT) * IVORY + TEETH_SKIN_TINT * skin / max(float(skin.max()), 1e-3)
        self.teeth_colour = teeth * np.clip(float(skin.mean()) / 0.6, 0.55, 1.0)
        self.tongue_tint = TONGUE_TINT
        if face.any() and float(np.ptp(rgb[face > 0], axis=1).mean()) < GREY_SPREAD:
            # a black-and-white picture: ivory teeth and a red tongue would be the only colour in it
            self.teeth_colour, self.lip_colour, self.tongue_tint = (
                np.full(3, float(c.mean()), np.float32) for c in (self.teeth_colour, self.lip_colour, TONGUE_TINT))
        self.neutral_gap = _gap(lm)

    def patch(self, points: np.ndarray) -> Patch | None:
        """The interior for deformed landmarks (478, 2), or None while the mouth is (nearly) closed."""
        width = float(np.linalg.norm(points[fr.MOUTH_LEFT] - points[fr.MOUTH_RIGHT]))
        opened = float(smoothstep(OPEN_START * width, OPEN_FULL * width, np.float32(_gap(points) - self.neutral_gap)))
        if opened <= 0.0:
            return None
        contour = _chaikin(points[list(fr.LIPS_INNER)].astype(np.float64), SMOOTHING_PASSES)
        x0, y0 = np.floor(contour.min(0)).astype(int) - 1
        x1, y1 = np.ceil(contour.max(0)).astype(int) + 2
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.size), min(y1, self.size)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        big = np.zeros(((y1 - y0) * SUPERSAMPLE, (x1 - x0) * SUPERSAMPLE), np.uint8)
        pts = np.round(((contour - (x0, y0) + 0.5) * SUPERSAMPLE - 0.5) * (1 << FILL_BITS)).astype(np.int32)
        cv2.fillPoly(big, [pts], 255, cv2.LINE_8, shift=FILL_BITS)
        mask = cv2.resize(big, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)

        # Mouth coordinates: a along the corner line, b across it (down), so head roll is handled.
        axis = points[fr.MOUTH_LEFT] - points[fr.MOUTH_RIGHT]
        axis = axis / max(np.linalg.norm(axis), 1e-6)
        normal = np.array([-axis[1], axis[0]])
        centre = (points[fr.MOUTH_LEFT] + points[fr.MOUTH_RIGHT]) / 2
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = xs - centre[0], ys - centre[1]
        a, b = dx * axis[0] + dy * axis[1], dx * normal[0] + dy * normal[1]

        def lip_curve(indices: tuple[int, ...]) -> np.ndarray:
            rel = points[list(indices)] - centre
            ca, cb = rel @ axis, rel @ normal
            order = np.argsort(ca)
            return np.interp(a, ca[order], cb[order])

        top, bottom = lip_curve(fr.UPPER_LIP_INNER), lip_curve(fr.LOWER_LIP_INNER)
        gap = np.maximum(bottom - top, 1e-3)
        t = np.clip((b - top) / gap, 0.0, 1.0)
        side = np.abs(a) / (0.5 * width)

        # Cavity: darkest at the back (middle), a little lighter towards the lips.
        lip = self.lip_colour[None, None]
        shade = 0.55 + 0.6 * np.abs(2 * t - 1) ** 2 + 0.3 * side ** 2
        colour = lip * CAVITY_TINT * shade[..., None]
        # Tongue hint low in a wide-open mouth.
        tongue = (smoothstep(0.55, 0.9, t) * smoothstep(0.12 * width, 0.3 * width, gap)
                  * (1 - smoothstep(0.3, 0.8, side)))
        colour = colour + (lip * self.tongue_tint - colour) * (0.6 * tongue)[..., None]
        # Upper teeth under the upper lip, fading and darkening towards the corners, with faint gaps.
        crown = np.minimum(TEETH_HEIGHT * width, TEETH_MAX_SHARE * gap)
        below_lip = b - top
        teeth = (1 - smoothstep(crown - 1.0, crown + 0.5, below_lip)) * (1 - smoothstep(0.45, 0.85, side))
        phase = a / (TOOTH_SPACING * width) + 0.5
        seams = 1 - 0.12 * np.exp(-((phase - np.round(phase)) * TOOTH_SPACING * width) ** 2 / 1.5)
        tooth_shade = (0.75 + 0.25 * smoothstep(0.0, 0.5 * crown, below_lip)) * (1 - 0.45 * side) * seams
        tooth = self.teeth_colour[None, None] * tooth_shade[..., None]
        colour = colour + (tooth - colour) * (0.9 * teeth)[..., None]

        alpha = cv2.GaussianBlur(mask, (0, 0), 0.6).astype(np.float32) * (opened / 255.0)
        return Patch(y0, x0, np.clip(colour * 255.0, 0, 255).astype(np.float32), alpha)
