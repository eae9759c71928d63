"""Invisible provenance watermark: every frame facecast outputs says "made by facecast".

Why this method (measured in ``benchmarks/watermark.py``): a spread-spectrum
pattern added to luma in the spatial domain, tiled periodically. It survives
what streaming does to video:

* **Rescaling** - the tile's period is a fixed fraction of the frame height
  (``PERIODS_PER_HEIGHT`` tiles top to bottom), and the detector measures the
  period from the residual's autocorrelation, so any rescale is found.
* **Cropping** - a crop only shifts the tile's phase (and changes the period's
  fraction of the height, which the measured period absorbs); the detector
  searches every cyclic shift at once with FFT correlation.
* **Compression and colour changes** - the pattern lives in mid frequencies
  (cells of about 4 px at 512 px), each payload bit is spread over 16 cells in
  every tile and over all tiles of the frame, and the detector sums the
  high-pass residual of many frames, so the evidence grows with time: a few
  seconds of video suffice where one heavily compressed frame does not.

Payload (64 bits): product id (8), version (4 + 4), a per-run id (32) and a
CRC-16 over those. "Detected" means the CRC and the product id both check, so a
random image passes with odds of about 2^-24 per candidate tried.

Embedding costs two saturating uint8 adds per frame against a pattern prepared
once per frame size (see ``Watermarker.embed``).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from importlib import metadata
from typing import Iterable

import cv2
import numpy as np

PRODUCT_ID = 0xFC
#: Cells along each side of one tile; each cell carries one chip of one payload bit.
CELLS = 32
#: Tiles stacked from top to bottom of the frame the mark is embedded in.
PERIODS_PER_HEIGHT = 4
PAYLOAD_BITS = 64
#: Fixed key: the chip signs and which cell carries which bit (anyone may detect; this is not a secret).
KEY = 0xFACECA57
#: Peak pattern amplitude in grey levels; measured PSNR of marked vs unmarked frames stays >= 40 dB.
STRENGTH = 3.6
#: Supersampling of the smoothed tile the frame pattern is sampled from.
_TILE_SUPERSAMPLE = 8
#: Detector resolution: pixels per cell after folding the residual into one tile.
_DETECT_PX = 2
#: Period candidates tried around each autocorrelation peak (relative scale steps).
_REFINE_STEPS = (0.0, -0.003, 0.003, -0.006, 0.006)
#: Mean |z| of the bit correlations below which nothing is reported, whatever the CRC says.
MIN_STRENGTH = 1.6


def _crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: a standard 16-bit check that rejects random bit strings."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


@dataclass(frozen=True)
class Payload:
    """What the mark says: this product, this version, this run."""

    run_id: int
    version: tuple[int, int] = (0, 1)
    product: int = PRODUCT_ID

    @classmethod
    def for_this_run(cls) -> "Payload":
        try:
            major, minor = (int(part) for part in metadata.version("facecast").split(".")[:2])
        except (metadata.PackageNotFoundError, ValueError):
            major, minor = 0, 1
        return cls(run_id=secrets.randbits(32), version=(major & 0xF, minor & 0xF))

    def _body(self) -> bytes:
        major, minor = self.version
        return bytes([self.product, (major & 0xF) << 4 | (minor & 0xF)]) + self.run_id.to_bytes(4, "big")

    def to_bits(self) -> np.ndarray:
        """64 signs (+1/-1), most significant bit first."""
        body = self._body()
        word = int.from_bytes(body + _crc16(body).to_bytes(2, "big"), "big")
        return np.array([1 if word >> (PAYLOAD_BITS - 1 - i) & 1 else -1 for i in range(PAYLOAD_BITS)],
                        dtype=np.float32)

    @classmethod
    def from_bits(cls, signs: np.ndarray) -> "Payload | None":
        """The payload if the CRC and product id check, else None."""
        word = 0
        for sign in signs:
            word = word << 1 | int(sign > 0)
        raw = word.to_bytes(PAYLOAD_BITS // 8, "big")
        body, crc = raw[:6], int.from_bytes(raw[6:], "big")
        if _crc16(body) != crc or body[0] != PRODUCT_ID:
            return None
        return cls(run_id=int.from_bytes(body[2:6], "big"), version=(body[1] >> 4, body[1] & 0xF), product=body[0])

    @property
    def run_hex(self) -> str:
        return f"{self.run_id:08x}"


class _Layout:
    """A keyed chip layout: a sign per cell, and which payload bit each cell carries."""

    def __init__(self, key: int) -> None:
        rng = np.random.default_rng(key)
        self.signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(CELLS, CELLS))
        # Each bit owns CELLS*CELLS/PAYLOAD_BITS = 16 cells, scattered over the tile.
        self.owner = rng.permutation(np.arange(CELLS * CELLS) % PAYLOAD_BITS).reshape(CELLS, CELLS)

    def cells(self, bits: np.ndarray) -> np.ndarray:
        return self.signs * bits[self.owner]

    def smooth_tile(self, bits: np.ndarray, px_per_cell: int) -> np.ndarray:
        """Cells as soft blobs (blurred with wrap-around, so the tile stays periodic), peak 1."""
        tile = np.kron(self.cells(bits), np.ones((px_per_cell, px_per_cell), dtype=np.float32))
        pad = 2 * px_per_cell
        wrapped = np.pad(tile, pad, mode="wrap")
        blurred = cv2.GaussianBlur(wrapped, (0, 0), 0.35 * px_per_cell)[pad:-pad, pad:-pad]
        return blurred / float(np.abs(blurred).max())


#: Two layouts carry the same payload in quadrature: the frame shows cos(wt)*A + sin(wt)*B.
_LAYOUTS = (_Layout(KEY), _Layout(KEY + 1))
#: Period of the slow temporal modulation; the detector's lock-in cancels the static picture.
MODULATION_PERIOD_S = 2.0


def frame_pattern(layout: _Layout, bits: np.ndarray, height: int, width: int) -> np.ndarray:
    """One layout's float pattern (peak ~1) for a frame of this size: tiles of height/PERIODS_PER_HEIGHT px."""
    tile = layout.smooth_tile(bits, _TILE_SUPERSAMPLE)
    side = tile.shape[0]
    to_tile = side * PERIODS_PER_HEIGHT / height
    xs = ((np.arange(width, dtype=np.float32) + 0.5) * to_tile - 0.5) % side
    ys = ((np.arange(height, dtype=np.float32) + 0.5) * to_tile - 0.5) % side
    map_x = np.broadcast_to(xs[None, :], (height, width)).astype(np.float32)
    map_y = np.broadcast_to(ys[:, None], (height, width)).astype(np.float32)
    return cv2.remap(tile, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def modulation(t: float) -> tuple[float, float]:
    """The weights of the two layouts at time t seconds: a slow rotation, constant total energy."""
    angle = 2.0 * math.pi * t / MODULATION_PERIOD_S
    return math.cos(angle), math.sin(angle)


class Watermarker:
    """Adds the payload's pattern to every frame's luma (the same delta on R, G and B).

    The two layouts' patterns are prepared once per frame shape; a frame then
    costs one weighted sum straight to uint8, two saturating subtracts to split
    it into a positive and a negative part, and two saturating adds in place.
    Alpha, where present, is left alone.
    """

    def __init__(self, payload: Payload | None = None, strength: float = STRENGTH) -> None:
        self.payload = payload or Payload.for_this_run()
        self.strength = strength
        self._bits = self.payload.to_bits()
        self._patterns: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}

    def embed(self, image: np.ndarray, t: float) -> np.ndarray:
        """Mark `image` (H, W, 3|4) uint8 shown at `t` seconds, in place, and return it."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"expected an (H, W, 3|4) uint8 image, got {image.shape} {image.dtype}")
        first, second, zero, middle = self._layout_patterns(image.shape[0], image.shape[1])
        c, s = modulation(t)
        offset = cv2.addWeighted(first, self.strength * c, second, self.strength * s, 128.0, dtype=cv2.CV_8U)
        positive = cv2.subtract(offset, 128)
        negative = cv2.subtract(middle, offset)
        planes = image.shape[2]
        fill = [zero] if planes == 4 else []
        cv2.add(image, cv2.merge([positive] * 3 + fill), dst=image)
        cv2.subtract(image, cv2.merge([negative] * 3 + fill), dst=image)
        return image

    def _layout_patterns(self, height: int, width: int) -> tuple[np.ndarray, ...]:
        key = (height, width)
        if key not in self._patterns:
            first, second = (frame_pattern(layout, self._bits, height, width) for layout in _LAYOUTS)
            zero = np.zeros((height, width), dtype=np.uint8)
            self._patterns[key] = (first, second, zero, zero + 128)
        return self._patterns[key]


# --- detection ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    """What the detector found: the payload when it decoded and checked, and how sure it is."""

    payload: Payload | None
    #: Mean z-score of the 64 bit decisions at the best period and shift.
    strength: float
    #: Mean estimated chance that each payload bit is right, from its z-score (0 when nothing decoded);
    #: the CRC already makes a decoded payload near-certain, this says how much margin the bits had.
    confidence: float
    #: Tile period found, in pixels of the analysed frames.
    period: float
    frames: int

    @property
    def detected(self) -> bool:
        return self.payload is not None


def luma_residual(image: np.ndarray) -> np.ndarray:
    """Band-pass luma normalised by local activity: flat areas count more than busy texture.

    The wide low-pass and the activity window use stack/box blurs: about 5x
    cheaper than Gaussians of that size (see benchmarks/README.md).
    """
    rgb = np.ascontiguousarray(image[:, :, :3])
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    cell = max(1.0, luma.shape[0] / (PERIODS_PER_HEIGHT * CELLS))
    wide = 2 * round(4.5 * cell) + 1
    band = cv2.GaussianBlur(luma, (0, 0), 0.3 * cell) - cv2.stackBlur(luma, (wide, wide))
    window = 2 * round(4.0 * cell) + 1
    # a box blur of squares can come out a hair below zero in float32: clamp before the root
    activity = np.sqrt(np.maximum(cv2.blur(band * band, (window, window)), 0.0))
    return np.clip(band / (activity + 0.5), -3.0, 3.0)


class LockIn:
    """Accumulates frame residuals against the embedder's slow modulation (a lock-in amplifier).

    The static picture is the same in every frame, so subtracting the
    time-mean cancels it; what rotates at the modulation rate is the mark.
    One frame alone (an image) is kept as it is: the decoder then finds the
    two layouts in whatever mix that frame's moment showed.
    """

    def __init__(self) -> None:
        self.frames = 0
        self._sum: np.ndarray | None = None
        self._cos: np.ndarray | None = None
        self._sin: np.ndarray | None = None
        self._weights = np.zeros(2)

    def add(self, image: np.ndarray, t: float) -> None:
        residual = luma_residual(image)
        if self._sum is not None and self._sum.shape != residual.shape:
            return  # a mid-stream size change: keep the first size's evidence
        c, s = modulation(t)
        if self._sum is None:
            self._sum, self._cos, self._sin = residual.copy(), residual * c, residual * s
        else:
            self._sum += residual
            self._cos += residual * c
            self._sin += residual * s
        self._weights += (c, s)
        self.frames += 1

    def maps(self) -> list[np.ndarray]:
        """The evidence maps to decode: the in-phase and quadrature sums with the static part removed."""
        if self._sum is None:
            return []
        if self.frames < 3:
            return [self._sum]
        mean = self._sum / self.frames
        return [self._cos - self._weights[0] * mean, self._sin - self._weights[1] * mean]


class _SyncTemplates:
    """Each layout's known cells (the product-id bits) at detector resolution, as conjugate FFTs.

    Finding the tile's shift needs only these: one correlation per layout and
    map instead of one per payload bit.
    """

    def __init__(self) -> None:
        block = np.ones((_DETECT_PX, _DETECT_PX), dtype=np.float32)
        known = np.array([1.0 if PRODUCT_ID >> (7 - i) & 1 else -1.0 for i in range(8)], dtype=np.float32)
        self.conj_fft = []
        for layout in _LAYOUTS:
            cells = np.where(layout.owner < 8, layout.signs * known[np.minimum(layout.owner, 7)], 0.0)
            self.conj_fft.append(np.conj(np.fft.rfft2(np.kron(cells.astype(np.float32), block))))
        self.side = CELLS * _DETECT_PX


_SYNC: _SyncTemplates | None = None


def _sync() -> _SyncTemplates:
    global _SYNC
    if _SYNC is None:
        _SYNC = _SyncTemplates()
    return _SYNC


def _period_candidates(maps: list[np.ndarray], count: int = 3) -> list[float]:
    """Tile periods suggested by peaks of the maps' autocorrelation along x and y."""
    height, width = maps[0].shape
    auto = sum(np.fft.irfft2(np.abs(np.fft.rfft2(m)) ** 2, s=m.shape) for m in maps)
    low = max(8, int(height / 6.0))
    high = min(int(height / 2.6), min(height, width) - 3)
    if high <= low + 2:
        return [height / PERIODS_PER_HEIGHT]

    def profile(lag: np.ndarray) -> np.ndarray:
        return auto[lag, 0] / height + auto[0, lag] / width

    lags = np.arange(low, high + 1)
    contrast = profile(lags) - (profile(lags - 2) + profile(lags + 2)) / 2
    picked: list[float] = []
    for index in np.argsort(contrast)[::-1]:
        lag = int(lags[index])
        if any(abs(lag - p) < 3 for p in picked):
            continue
        y0, y1, y2 = profile(np.array([lag - 1, lag, lag + 1]))
        curvature = y0 - 2 * y1 + y2
        offset = 0.5 * (y0 - y2) / curvature if curvature < 0 else 0.0
        picked.append(lag + float(np.clip(offset, -0.5, 0.5)))
        if len(picked) == count:
            break
    return picked


def _fold(residual: np.ndarray, period: float, side: int) -> np.ndarray:
    """Resample so one period is `side` px and sum every (partial) tile into one."""
    scale = side / period
    height, width = residual.shape
    rows, cols = math.ceil(height * scale / side), math.ceil(width * scale / side)
    source = cv2.GaussianBlur(residual, (0, 0), 0.5 / scale) if scale < 1.0 else residual
    warp = np.array([[scale, 0, 0], [0, scale, 0]], dtype=np.float64)
    resampled = cv2.warpAffine(source, warp, (cols * side, rows * side), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return resampled.reshape(rows, side, cols, side).sum(axis=(0, 2))


def _decode_at(maps: list[np.ndarray], period: float) -> tuple[np.ndarray, float]:
    """Per-bit z-scores for this period, combining every map with every layout.

    The shift comes from the known product-id cells. Each (map, layout) pair
    then sees the payload's bits times an unknown weight (the modulation
    phase); the weights are the principal axis of the pairs' per-bit sums,
    and the global sign is left to the CRC.
    """
    sync = _sync()
    side = sync.side
    folded = [_fold(m, period, side) for m in maps]
    energy = np.zeros((side, side))
    for fold_map in folded:
        spectrum = np.fft.rfft2(fold_map)
        for conj in sync.conj_fft:
            energy += np.fft.irfft2(spectrum * conj, s=(side, side)) ** 2
    dy, dx = np.unravel_index(int(np.argmax(energy)), energy.shape)
    sums, cell_maps = [], []
    for fold_map in folded:
        shifted = np.roll(fold_map, (-dy, -dx), axis=(0, 1))
        cells = shifted.reshape(CELLS, _DETECT_PX, CELLS, _DETECT_PX).sum(axis=(1, 3))
        for layout in _LAYOUTS:
            signed = cells * layout.signs
            cell_maps.append((signed, layout))
            sums.append(np.bincount(layout.owner.ravel(), weights=signed.ravel(), minlength=PAYLOAD_BITS))
    points = np.stack(sums, axis=1)                                       # (bits, pairs)
    axis = np.linalg.eigh(points.T @ points)[1][:, -1]
    projected = points @ axis
    bits = np.where(projected >= 0, 1.0, -1.0)
    # noise from the per-cell spread once each cell is signed by its decoded bit
    variance = sum(weight ** 2 * float((signed * bits[layout.owner]).var())
                   for weight, (signed, layout) in zip(axis, cell_maps))
    z = projected / (math.sqrt(variance * CELLS * CELLS / PAYLOAD_BITS) + 1e-9)
    return z.astype(np.float32), float(np.abs(z).mean())


def detect_maps(maps: list[np.ndarray], frames: int = 1) -> Detection:
    """Search the measured periods (and small steps around them) for a payload that checks."""
    best = Detection(payload=None, strength=0.0, confidence=0.0, period=0.0, frames=frames)
    if not maps:
        return best
    for candidate in _period_candidates(maps):
        for step in _REFINE_STEPS:
            period = candidate * (1.0 + step)
            z, strength = _decode_at(maps, period)
            if strength >= MIN_STRENGTH:
                for polarity in (1.0, -1.0):
                    payload = Payload.from_bits(polarity * z)
                    if payload is not None:
                        return Detection(payload, strength, _confidence(z), period, frames)
            if strength > best.strength:
                best = Detection(None, strength, 0.0, period, frames)
    return best


def _confidence(z: np.ndarray) -> float:
    """Mean over bits of the chance the bit is right, given its z-score (Gaussian noise)."""
    flip = 0.5 * np.array([math.erfc(abs(float(v)) / math.sqrt(2.0)) for v in z])
    return float(1.0 - flip.mean())


def detect_frames(frames: Iterable[tuple[np.ndarray, float]]) -> Detection:
    """Detect over (RGB(A) frame, time in seconds) pairs of one size."""
    lock_in = LockIn()
    for image, t in frames:
        lock_in.add(image, t)
    return detect_maps(lock_in.maps(), lock_in.frames)
