"""The renderer: animates a portrait rig with motion frames by a dense backward warp.

Per frame: the active channels' precomputed backward fields (see
`warp_basis`) are summed on a coarse grid, composed with the rigid head motion
(roll, distance, translation about the neck, applied through a soft head mask so
hair moves with the head while shoulders and background stay), upsampled and
used to resample the portrait once. An opening mouth gets a synthesised interior
(`mouth_interior`). The CPU path uses OpenCV; the CUDA path runs the same math in
torch with `grid_sample` (`torch_warp`); torch is imported only when that path
is used, so CPU renders skip its start-up cost.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import cv2
import numpy as np

from facecast.errors import InputError
from facecast.face_model import GAZE_REF_DEG, PARALLAX_REF_DEG
from facecast.motion import EXPRESSION_CHANNELS, MotionFrame
from facecast.render.closed_lids import ClosedLids
from facecast.render.mouth_interior import MouthInterior, Patch
from facecast.render.paste_back import PasteBack
from facecast.render.shut_lips import shut_lips
from facecast.render.warp_basis import WarpBasis, edge_easing, split_turn, sum_fields
from facecast.rig import PortraitRig

#: Head turns (yaw, pitch) are drawn as given up to TURN_KNEE_DEG and beyond it eased towards TURN_MAX_DEG: one
#: picture warped further tears (a 3/4 portrait's brow pulled past its outline, the far eye squashed, a cheek
#: smeared, glasses kinked; on the portraits these begin at about 12 degrees). The motion itself is untouched:
#: VMC, VRChat and VTube Studio receivers get the whole turn.
TURN_KNEE_DEG, TURN_MAX_DEG = 10.0, 15.0
#: Gaze beyond this many times the reference angle is clamped (the iris must stay in the eye).
MAX_GAZE_SCALE = 1.0
#: Coefficients below this are treated as zero (skips their fields).
ACTIVE_EPS = 1e-3
#: Distance is clamped to this range (relative to the portrait).
DISTANCE_RANGE = (0.5, 2.0)
DEVICES = ("auto", "cpu", "cuda")
#: Cells of still margin around the moving box (bilinear upsampling reaches one cell out).
BOX_MARGIN = 2
#: A square pasted back into the whole picture blends over this share of its side at its inner edges.
PASTE_FEATHER = 0.03
_IDENTITY = np.eye(3)[:2]


def drawn_turn(degrees: float) -> float:
    """How far (degrees, >= 0) a head turn of `degrees` is drawn: as given up to TURN_KNEE_DEG, then easing
    smoothly (same slope at the knee) towards TURN_MAX_DEG."""
    if degrees <= TURN_KNEE_DEG:
        return degrees
    room = TURN_MAX_DEG - TURN_KNEE_DEG
    return TURN_KNEE_DEG + room * math.tanh((degrees - TURN_KNEE_DEG) / room)


def _coefficients(frame: MotionFrame) -> dict[str, float]:
    """The active channels and their strengths for one frame."""
    coeffs = {name: frame.expression(name) for name in EXPRESSION_CHANNELS}
    # mouthClose closes the lips over an open jaw; alone it would push the lips into each other.
    coeffs["mouthClose"] = min(coeffs["mouthClose"], coeffs["jawOpen"])
    coeffs["blinkLeft"], coeffs["blinkRight"] = frame.blink.left, frame.blink.right
    for axis, angle in (("yaw", frame.head.yaw), ("pitch", frame.head.pitch)):
        coeffs[axis + ("+" if angle > 0 else "-")] = drawn_turn(abs(angle)) / PARALLAX_REF_DEG
    gaze_x = float(np.clip(frame.gaze.yaw / GAZE_REF_DEG, -MAX_GAZE_SCALE, MAX_GAZE_SCALE))
    gaze_y = float(np.clip(frame.gaze.pitch / GAZE_REF_DEG, -MAX_GAZE_SCALE, MAX_GAZE_SCALE))
    for side, blink in (("Left", frame.blink.left), ("Right", frame.blink.right)):
        # A closing lid hides the iris; shifting it would only slide lid skin.
        coeffs[f"gazeX{side}"] = gaze_x * (1.0 - blink)
        coeffs[f"gazeY{side}"] = gaze_y * (1.0 - blink)
    return {name: c for name, c in coeffs.items() if abs(c) > ACTIVE_EPS}


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU; torch is not even imported where no NVIDIA driver exists."""
    if sys.platform.startswith("linux") and not os.path.exists("/proc/driver/nvidia"):
        return False
    if sys.platform == "darwin":
        return False
    import torch  # lazy: torch is slow to import and CPU renders never need it

    return bool(torch.cuda.is_available())


def _affine3(matrix2x3: np.ndarray) -> np.ndarray:
    return np.vstack([matrix2x3, [0.0, 0.0, 1.0]])


class Renderer:
    """Renders frames of one portrait rig; construction precomputes everything per portrait."""

    def __init__(self, rig: PortraitRig, device: str = "auto", *, backend: str | None = None) -> None:
        """`backend` ("cv2" or "torch") overrides the default (cv2 on CPU, torch on CUDA), e.g. for tests."""
        if device not in DEVICES:
            raise InputError(f"unknown device '{device}': use {', '.join(DEVICES)}")
        if device == "auto":
            device = "cuda" if cuda_available() else "cpu"
        if device == "cuda" and not cuda_available():
            raise InputError("device 'cuda' requested but no CUDA GPU is available to torch")
        backend = backend or ("torch" if device == "cuda" else "cv2")
        if backend not in ("cv2", "torch") or (backend == "cv2" and device == "cuda"):
            raise InputError(f"backend '{backend}' is not available on device '{device}'")
        self.device = device
        self.size = rig.size
        self.channels = int(rig.image.shape[2])
        #: the portrait's own lips, shut (motion opens them from there), and how far they were parted (face heights)
        self._image, landmarks, self.parted_lips = shut_lips(np.ascontiguousarray(rig.image), rig.landmarks)
        self._motion_scale = rig.motion_scale
        self._paste = None if rig.backdrop is None else PasteBack(
            rig.backdrop, rig.placement, rig.size, self.channels, round(PASTE_FEATHER * rig.size))
        #: (height, width) of the frames `render` returns: the square, or the whole picture it is pasted into.
        self.frame_shape = rig.frame_shape
        self._basis = WarpBasis(self._image, landmarks)
        self._mouth = MouthInterior(self._image, landmarks)
        self._lids = ClosedLids(self._image, self._basis)
        if backend == "torch":
            from facecast.render.torch_warp import TorchWarper  # lazy: it imports torch

            self._warper: Any = TorchWarper(self._image, self._basis, device)
        else:
            self._warper = _Cv2Warper(self._image, self._basis)

    def render(self, frame: MotionFrame) -> np.ndarray:
        """One uint8 RGB(A) frame for `frame`: (size, size, channels), or `frame_shape` for a pasted-back rig."""
        square = self._render_square(frame)
        return square if self._paste is None else self._paste(square)

    def _render_square(self, frame: MotionFrame) -> np.ndarray:
        coeffs = _coefficients(frame)
        forward = self._head_affine(frame)
        rigid = float(np.abs(forward - _IDENTITY).max()) > 1e-6
        if not coeffs and not rigid:
            return self._image.copy()
        inverse = cv2.invertAffineTransform(forward) if rigid else None
        points = self._moved_landmarks(coeffs, forward if rigid else None)
        mouth = self._mouth.patch(points)
        patches = ([] if mouth is None else [mouth]) + self._lids.patches(
            points, {"Left": frame.blink.left, "Right": frame.blink.right})
        return self._warper.render(coeffs, inverse, patches)

    def _head_affine(self, frame: MotionFrame) -> np.ndarray:
        """Forward rigid head motion (2x3): roll about the neck, scale about the face, then shift."""
        head = frame.head
        pivot, centre = self._basis.neck_pivot, self._basis.face_centre
        # OpenCV's positive angle is counter-clockwise as seen, like roll > 0.
        roll = _affine3(cv2.getRotationMatrix2D((float(pivot[0]), float(pivot[1])), head.roll, 1.0))
        moved_centre = roll[:2, :2] @ centre + roll[:2, 2]
        scale = 1.0 / float(np.clip(head.distance, *DISTANCE_RANGE))
        zoom = _affine3(cv2.getRotationMatrix2D((float(moved_centre[0]), float(moved_centre[1])), 0.0, scale))
        # head x, y are fractions of the reference framing's frame (motion.py): scaled to this crop's
        unit = self.size * self._motion_scale
        shift = np.array([[1.0, 0.0, head.x * unit], [0.0, 1.0, -head.y * unit], [0.0, 0.0, 1.0]])
        return (shift @ zoom @ roll)[:2]

    def _moved_landmarks(self, coeffs: dict[str, float], forward: np.ndarray | None) -> np.ndarray:
        """Where the landmarks are in this frame (for the mouth interior)."""
        basis = self._basis
        names = [n for n in coeffs if n in basis.channel_index]
        points = basis.landmarks.astype(np.float32)
        if names:
            weights = np.array([coeffs[n] for n in names], np.float32)
            moves = basis.displacements[[basis.channel_index[n] for n in names]]
            points = points + np.einsum("k,kij->ij", weights, moves)
        if forward is not None:
            cells = basis.grid.to_cells(points).astype(np.float32)
            mask = cv2.remap(basis.head_mask, cells[None, :, 0], cells[None, :, 1], cv2.INTER_LINEAR)[0]
            points = points + mask[:, None] * (points @ forward[:, :2].T + forward[:, 2] - points)
        return points


def _remap(image: np.ndarray, positions: np.ndarray, border: int) -> np.ndarray:
    """Bilinear samples at (h, w, 2) float positions; fixed-point maps make cv2.remap about twice as fast."""
    fixed, fraction = cv2.convertMaps(positions, None, cv2.CV_16SC2)
    return cv2.remap(image, fixed, fraction, cv2.INTER_LINEAR, borderMode=border)


class _Cv2Warper:
    """The CPU path: numpy for the flow, cv2.remap for the resampling.

    The coarse grid works in cell units, and only the box of cells that can
    move this frame is upsampled and resampled; the rest is a copy.
    """

    def __init__(self, image: np.ndarray, basis: WarpBasis) -> None:
        grid = basis.grid
        self._image = image
        self._basis = basis
        self._data = {name: f.data / np.float32(grid.scale) for name, f in basis.fields.items()}
        axis = np.arange(grid.cells, dtype=np.float32)
        self._cells = np.stack(np.meshgrid(axis, axis), -1)
        axis = np.arange(grid.extent, dtype=np.float32)
        self._pixels = np.stack(np.meshgrid(axis, axis), -1)
        self._flow = np.zeros_like(self._cells)
        self._turn = np.zeros_like(self._cells)
        offset = 0.5 / grid.scale - 0.5
        self._to_cells = np.array([[1 / grid.scale, 0, offset], [0, 1 / grid.scale, offset], [0, 0, 1]])
        self._from_cells = np.linalg.inv(self._to_cells)
        ys, xs = np.nonzero(basis.head_mask > 0)
        self._head_box = (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
        self._towards_low, self._towards_high = edge_easing(grid.size)
        #: pixels next to each edge where motion towards it is eased
        self._eased = int((self._towards_low < 1).sum())

    def _moving_box(self, coeffs: dict[str, float], forward_cells: np.ndarray | None) -> tuple[int, int, int, int]:
        """The cells (y0, y1, x0, x1) whose output can differ from the portrait this frame."""
        boxes = [(f.y0, f.y0 + f.data.shape[0], f.x0, f.x0 + f.data.shape[1])
                 for name, f in self._basis.fields.items() if name in coeffs]
        if forward_cells is not None:
            boxes.append(self._head_box)
            for y0, y1, x0, x1 in list(boxes):
                corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64)
                moved = corners @ forward_cells[:, :2].T + forward_cells[:, 2]
                lo, hi = np.floor(moved.min(0)), np.ceil(moved.max(0))
                boxes.append((int(lo[1]), int(hi[1]), int(lo[0]), int(hi[0])))
        if not boxes:
            return 0, 0, 0, 0
        box = np.array(boxes)
        cells = self._basis.grid.cells
        return (max(int(box[:, 0].min()) - BOX_MARGIN, 0), min(int(box[:, 1].max()) + BOX_MARGIN, cells),
                max(int(box[:, 2].min()) - BOX_MARGIN, 0), min(int(box[:, 3].max()) + BOX_MARGIN, cells))

    def render(self, coeffs: dict[str, float], inverse: np.ndarray | None, patches: list[Patch]) -> np.ndarray:
        basis, grid = self._basis, self._basis.grid
        flow, turn = self._flow, self._turn
        face, turned = split_turn(coeffs)
        flow.fill(0.0)
        sum_fields(flow, self._data, basis, face)
        if turned:
            turn.fill(0.0)
            sum_fields(turn, self._data, basis, turned)
        if inverse is None:
            in_cells = forward_cells = None
        else:
            in_cells = self._to_cells @ _affine3(inverse) @ self._from_cells
            forward_cells = cv2.invertAffineTransform(in_cells[:2])
        cy0, cy1, cx0, cx1 = self._moving_box(coeffs, forward_cells)
        out = self._image.copy()
        if cy1 <= cy0 or cx1 <= cx0:
            return out
        if in_cells is None and not turned:
            box = flow[cy0:cy1, cx0:cx1]
        else:
            # each output point: back through the rigid head motion, then the head's turn, then the face's fields
            cells = self._cells[cy0:cy1, cx0:cx1]
            source = cells
            if in_cells is not None:
                behind = cv2.transform(cells, in_cells[:2])   # where each output point was before the head moved
                mask = _remap(basis.head_mask, behind, cv2.BORDER_CONSTANT)
                source = cells + mask[..., None] * (behind - cells)
            if turned:
                source = source + _remap(turn, source, cv2.BORDER_CONSTANT)
            box = source - cells + _remap(flow, source, cv2.BORDER_CONSTANT)
        k = grid.scale
        y0, y1, x0, x1 = cy0 * k, min(cy1 * k, grid.size), cx0 * k, min(cx1 * k, grid.size)
        if k > 1:
            # Upsample the displacement, not the positions: identity must stay exact at the box edges.
            box = cv2.resize(box, ((cx1 - cx0) * k, (cy1 - cy0) * k), interpolation=cv2.INTER_LINEAR)
        positions = cv2.scaleAdd(box[:y1 - y0, :x1 - x0], float(k), self._pixels[y0:y1, x0:x1])
        self._ease_edges(positions, y0, x0)
        out[y0:y1, x0:x1] = _remap(self._image, positions, cv2.BORDER_REPLICATE)
        for patch in patches:
            h, w = patch.alpha.shape
            region = out[patch.y0:patch.y0 + h, patch.x0:patch.x0 + w, :3].astype(np.float32)
            alpha = patch.alpha[..., None]
            region += alpha * (patch.colour - region)
            out[patch.y0:patch.y0 + h, patch.x0:patch.x0 + w, :3] = np.rint(region).astype(np.uint8)
        return out

    def _ease_edges(self, positions: np.ndarray, y0: int, x0: int) -> None:
        """In place: sampling towards the frame's edges eased to nothing at them (`edge_easing`), on the rows and
        columns of the resampled box (its corner at y0, x0) that lie next to an edge."""
        size, eased = self._basis.grid.size, self._eased
        # rows carry y (component 1); columns, seen as the rows of the transposed view, carry x (component 0)
        for view, origin, component in ((positions, y0, 1), (positions.swapaxes(0, 1), x0, 0)):
            for lo, hi in ((0, eased), (max(eased, size - eased), size)):
                lo, hi = max(lo, origin), min(hi, origin + view.shape[0])
                if hi <= lo:
                    continue
                band = view[lo - origin:hi - origin, :, component]
                here = np.arange(lo, hi, dtype=np.float32)[:, None]
                shift = band - here
                band[...] = (here + np.maximum(shift, 0) * self._towards_high[lo:hi, None]
                             + np.minimum(shift, 0) * self._towards_low[lo:hi, None])
