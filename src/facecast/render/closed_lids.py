"""A closed lid painted where a blink's warp leaves the eye's remains.

The blink warp (`Eye.blink_shift`) stretches lid skin down over the eye, but its
field is smooth, so along the line where the lids meet it squeezes the whole eye
(iris, sclera, both lash lines) into a thin dark band: the face mesh then reads
the eye as a third to two thirds open and viewers see a slit. Per eye we
precompute, once, how the shut eye should look: the warp's own shut picture,
with that band replaced by lid skin (per column, blended between the skin just
above and just below it), lit a little towards the lid's edge, and an
anti-aliased lash line (with a softer fringe below it) along the curve where
the lids meet, tapering at the corners. Around that line the lid skin is
smoothed (per column, blended between skin further above and below it): the
fold, the socket's shading edge and the lower lid's line, stretched or left
there by the warp, otherwise read as a second lid edge and the eye as a slit.
The lash line is kept dark against the lid, as on real shut eyes (a painting's
lash pixels are often barely darker than its skin). The picture is kept in eye
coordinates and, per frame, moved with the eye corners (head roll, distance,
turn) and faded in over the last part of the blink.
"""

from __future__ import annotations

import cv2
import numpy as np

from facecast import face_regions as fr
from facecast.face_model import BLINK_LASH_SKIP, BLINK_LOWER_MARGIN, BLINK_LOWER_RISE, Eye, FaceFrame, smoothstep
from facecast.render.mouth_interior import Patch
from facecast.render.warp_basis import WarpBasis

#: The painted lid fades in between these blink strengths (below, the warp alone shows the closing lid).
FADE_START, FADE_FULL = 0.6, 0.95
#: Lengths named _PX are pixels of a 512² output, scaled with the output's size (a lash line as thick at 256² as
#: at 512² reads on the face mesh as an eye still open).
#: Margin (eye widths) of the eye picture beyond the corners and (openings) above and below the lids.
PAD_U, PAD_V = 0.08, 0.6
#: Rows (pixels) of skin added around the squeezed band, and the band's edge softness.
BAND_GROW_PX = 1.0
EDGE_SOFT_PX = 1.0
#: Lid light: lightened this share towards white at the lash line, fading over this many openings above it.
LID_LIGHT, LID_LIGHT_REACH = 0.12, 0.8
#: Lash line: thickness (share of the opening, at least LASH_MIN_PX), darkness at its middle, corner taper
#: (eye widths); the fringe of lashes below it: darkness, offset and spread (line thicknesses).
LASH_WIDTH = 0.08
LASH_MIN_PX = 1.5
LASH_STRENGTH = 1.0
LASH_TAPER = 0.05
FRINGE, FRINGE_BELOW, FRINGE_SPREAD = 0.4, 2.0, 1.5
#: The lash colour: this percentile of the luma in the portrait's upper lash zone, darkened where needed to at
#: most LASH_CONTRAST of the lid skin's median luma. Real shut eyes' lash lines measure 0.26-0.47 of the skin
#: around them (median 0.42; 24 eyes of 12 people in ../shared/data, the face mesh reading them <= 0.13 of open).
LASH_PERCENTILE = 10
LASH_CONTRAST = 0.3
#: Lid skin smoothed this many openings above and below the line where the lids meet (rows blended between the
#: ends, after a blur of SMOOTH_BLUR_PX down and SMOOTH_BLUR_U eye widths across, so the ends carry no texture into
#: the blend: a blend between unblurred end rows streaks), fading out over SMOOTH_FADE eye widths towards the
#: picture's sides (PAD_U beyond the corners).
SMOOTH_ABOVE, SMOOTH_BELOW = 1.0, 0.6
SMOOTH_BLUR_PX, SMOOTH_BLUR_U = 1.5, 0.08
SMOOTH_FADE = 0.15
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
CORNER_POINTS = {"Left": (fr.LEFT_EYE_OUTER, fr.LEFT_EYE_INNER), "Right": (fr.RIGHT_EYE_OUTER, fr.RIGHT_EYE_INNER)}


def _blend_rows(image: np.ndarray, first: np.ndarray, last: np.ndarray,
                soft: float = EDGE_SOFT_PX) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the rows between `first` and `last` (fractional, per column) as a linear blend of the rows at
    the two ends, and the weight (0..1, edges softened over `soft` pixels) of the rows that blend covers."""
    rows = np.arange(image.shape[0], dtype=np.float64)[:, None]
    columns = np.arange(image.shape[1])
    above, below = image[np.floor(first).astype(int), columns], image[np.ceil(last).astype(int), columns]
    t = np.clip((rows - first) / np.maximum(last - first, 1.0), 0.0, 1.0)[..., None]
    weight = smoothstep(first - soft, first, rows) * (1 - smoothstep(last, last + soft, rows))
    return above + t * (below - above), weight


class _ShutEye:
    """One eye's precomputed shut picture in a raster aligned with the eye (rows along v, columns along u)."""

    def __init__(self, image: np.ndarray, eye: Eye, frame: FaceFrame, field_px: np.ndarray, box: tuple[int, int],
                 scale: int, corners: np.ndarray, px: float = 1.0) -> None:
        """`px`: the output's size over 512 (the _PX constants' unit)."""
        u = np.arange(eye.u0 - PAD_U * eye.width, eye.u1 + PAD_U * eye.width + 1.0, 1.0)
        v = np.arange(eye.upper_v.min() - PAD_V * eye.opening, eye.lower_v.max() + PAD_V * eye.opening + 1.0, 1.0)
        uu, vv = np.meshgrid(u, v)
        xy = (frame.origin + uu[..., None] * frame.u + vv[..., None] * frame.v).astype(np.float32)
        # The blink field at these pixels, sampled the way the renderer upsamples it (cell centres).
        by0, bx0 = box
        cells = (xy + 0.5) / scale - 0.5 - np.array([bx0, by0], np.float32)
        disp = cv2.remap(field_px, cells[..., 0], cells[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        source = xy + disp
        rgb = image[:, :, :3]
        shut = cv2.remap(rgb, source[..., 0], source[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        # Where the shut picture shows the eye itself (from the upper lash line to below the lower lid).
        source_v = frame.local(source.astype(np.float64))[..., 1]
        top, bottom = eye.upper_at(uu), eye.lower_at(uu)
        gap = np.maximum(bottom - top, 0.0)
        inside_u = (uu > eye.u0) & (uu < eye.u1)
        squeezed = inside_u & (source_v > top - BLINK_LASH_SKIP * gap) & (source_v < bottom + BLINK_LOWER_MARGIN * gap)
        meet = bottom - BLINK_LOWER_RISE * gap
        meet_row = meet[0] - v[0]
        # Per column, the squeezed band (always including the meeting line) becomes lid skin, blended
        # between the skin just above and just below it.
        first = np.where(squeezed.any(0), np.argmax(squeezed, 0), len(v))
        last = np.where(squeezed.any(0), len(v) - 1 - np.argmax(squeezed[::-1], 0), 0)
        first = np.clip(np.minimum(first, meet_row) - BAND_GROW_PX * px, 0, len(v) - 1)
        last = np.clip(np.maximum(last, meet_row) + BAND_GROW_PX * px, 0, len(v) - 1)
        colour, band = _blend_rows(shut, first, last, EDGE_SOFT_PX * px)
        band = band * inside_u
        colour = shut + band[..., None] * (colour - shut)
        # A closed lid is a lit bulge: a little lighter towards the lash line (the open eye's socket shadow,
        # stretched down with the skin, otherwise reads as an opening).
        above_line = (meet - vv) / max(eye.opening, 1.0)
        light = LID_LIGHT * (1 - smoothstep(0.0, LID_LIGHT_REACH, above_line)) * smoothstep(-0.1, 0.1, above_line)
        light *= inside_u
        colour = colour + light[..., None] * (255.0 - colour)
        # Smooth lid skin just below, then just above, the meeting line (the rows next to it excluded: the lash
        # line covers them); the blend's end rows are left as they are, so it joins the skin beyond without a seam.
        smooth = np.zeros_like(band)
        sides = smoothstep(0.0, SMOOTH_FADE * eye.width, np.minimum(uu - u[0], u[-1] - uu))
        for start, stop in ((meet_row + 1.0, meet_row + SMOOTH_BELOW * eye.opening),
                            (meet_row - SMOOTH_ABOVE * eye.opening, meet_row - 1.0)):
            ends = cv2.GaussianBlur(colour, (0, 0), sigmaX=max(SMOOTH_BLUR_U * eye.width, SMOOTH_BLUR_PX * px),
                                    sigmaY=SMOOTH_BLUR_PX * px)
            blended, rows_in = _blend_rows(ends, np.clip(start, 0, len(v) - 1), np.clip(stop, 0, len(v) - 1),
                                           EDGE_SOFT_PX * px)
            rows_in = rows_in * sides
            colour = colour + rows_in[..., None] * (blended - colour)
            smooth = np.maximum(smooth, rows_in)
        # The lash line where the lids meet, thinning to the corners, with a softer fringe of lashes below it.
        taper = smoothstep(0.0, LASH_TAPER * eye.width, np.minimum(uu - eye.u0, eye.u1 - uu))
        thickness = np.maximum(LASH_WIDTH * eye.opening, LASH_MIN_PX * px) * (0.4 + 0.6 * taper)
        across = (vv - meet) / thickness
        lash = np.maximum(LASH_STRENGTH * np.exp(-0.5 * across ** 2),
                          FRINGE * np.exp(-0.5 * ((across - FRINGE_BELOW) / FRINGE_SPREAD) ** 2))
        lash *= taper * inside_u
        skin = float(np.median(colour[inside_u] @ LUMA))
        colour = colour + lash[..., None] * (self._lash_colour(rgb, eye, frame, skin) - colour)
        self.colour = np.clip(colour, 0, 255).astype(np.float32)
        self.alpha = np.maximum.reduce([band, lash, light / LID_LIGHT, smooth]).astype(np.float32)
        #: raster (column, row) -> portrait pixel
        self.to_portrait = np.column_stack([frame.u, frame.v, frame.origin + u[0] * frame.u + v[0] * frame.v])
        self.corners = corners

    @staticmethod
    def _lash_colour(rgb: np.ndarray, eye: Eye, frame: FaceFrame, skin: float) -> np.ndarray:
        """The colour of the portrait's darkest lash pixels (the lid's upper edge and what lies just above it),
        darkened to at most LASH_CONTRAST of the lid skin's luma `skin`."""
        u = np.linspace(eye.u0 + 0.2 * eye.width, eye.u1 - 0.2 * eye.width, 24)
        top = eye.upper_at(u)
        gap = eye.lower_at(u) - top
        vs = top[None] + np.linspace(-BLINK_LASH_SKIP, 0.1, 8)[:, None] * gap[None]
        xy = frame.origin + u[None, :, None] * frame.u + vs[..., None] * frame.v
        samples = cv2.remap(rgb, xy[..., 0].astype(np.float32), xy[..., 1].astype(np.float32), cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE).reshape(-1, 3).astype(np.float32)
        luma = samples @ LUMA
        colour = samples[luma <= np.percentile(luma, LASH_PERCENTILE)].mean(0)
        return colour * min(1.0, LASH_CONTRAST * skin / max(float(colour @ LUMA), 1.0))

    def patch(self, corners: np.ndarray, fade: float, size: int) -> Patch | None:
        """The shut picture moved with the eye corners (similarity), its alpha scaled by `fade`."""
        d0, d1 = self.corners[1] - self.corners[0], corners[1] - corners[0]
        scale = np.linalg.norm(d1) / max(np.linalg.norm(d0), 1e-6)
        angle = np.arctan2(d1[1], d1[0]) - np.arctan2(d0[1], d0[0])
        c, s = scale * np.cos(angle), scale * np.sin(angle)
        rotation = np.array([[c, -s], [s, c]])
        moved = np.column_stack([rotation, corners[0] - rotation @ self.corners[0]])
        to_output = moved @ np.vstack([self.to_portrait, [0.0, 0.0, 1.0]])
        h, w = self.alpha.shape
        outline = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ to_output.T
        x0, y0 = np.maximum(np.floor(outline.min(0)).astype(int) - 1, 0)
        x1, y1 = np.minimum(np.ceil(outline.max(0)).astype(int) + 1, size)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        local = to_output.copy()
        local[:, 2] -= (x0, y0)
        flags = cv2.INTER_LINEAR
        colour = cv2.warpAffine(self.colour, local, (x1 - x0, y1 - y0), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(self.alpha, local, (x1 - x0, y1 - y0), flags=flags, borderMode=cv2.BORDER_CONSTANT)
        return Patch(int(y0), int(x0), colour, alpha * np.float32(fade))


class ClosedLids:
    """Both eyes' painted shut lids for one portrait (see the module docstring)."""

    def __init__(self, image: np.ndarray, basis: WarpBasis) -> None:
        self.size = image.shape[0]
        scale = basis.grid.scale
        self._eyes = {}
        for side, eye in basis.eyes.items():
            field = basis.fields[f"blink{side}"]
            corners = basis.landmarks[list(CORNER_POINTS[side])].astype(np.float64)
            self._eyes[side] = _ShutEye(image, eye, basis.frame, field.data, (field.y0, field.x0), scale, corners,
                                        self.size / 512)

    def patches(self, points: np.ndarray, blinks: dict[str, float]) -> list[Patch]:
        """The lids to paint for moved landmarks `points` and each side's blink strength."""
        out = []
        for side, eye in self._eyes.items():
            fade = float(smoothstep(FADE_START, FADE_FULL, np.float32(blinks.get(side, 0.0))))
            if fade > 0.0:
                patch = eye.patch(points[list(CORNER_POINTS[side]), :2].astype(np.float64), fade, self.size)
                if patch is not None:
                    out.append(patch)
        return out
