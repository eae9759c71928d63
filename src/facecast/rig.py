"""The analysed portrait: the framed picture plus its face landmarks.

Portrait analysis (`facecast.face.portrait`) builds it; the renderer
(`facecast.render.renderer`) animates it. Both only share this structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PortraitRig:
    """A square portrait crop (what the renderer animates) and its 478 face-mesh landmarks.

    image: (size, size, 3) RGB or (size, size, 4) RGBA, uint8. Alpha is kept
        from RGBA inputs so overlays stay transparent around the avatar.
        Whoever changes it (a cut-out's alpha) keeps it square and the backdrop's channels in step.
    landmarks: (478, 3) float32 in output pixels: x right, y down, z depth in
        the same pixel scale (mediapipe's convention: smaller z = nearer the camera).
    source: where the portrait came from (a path or a description), for messages.
    face_count: how many faces the analysis found (the rig uses one of them).
    method: how the landmarks were obtained ("face_mesh", "face_mesh+retry:<how>", "manual").
    framing: how the picture was framed (`facecast.face.portrait.FRAMINGS`, or "fixed": the legacy framing).
    transform: 3x3 from the source picture's pixels to the image's (pixel centres), None when unknown.
    picture_size: the source picture's (width, height).
    backdrop: for framing "full", the whole output frame (H, W, channels) the animated square is pasted
        back into at `placement` (x, y of its top-left); None when the square is the frame.
    motion_scale: head translation (`motion.HeadPose.x`, `y`: fractions of a frame where the face fills
        the reference 40 %) times this is a fraction of the image: the face's length over that reference's.
    """

    image: np.ndarray
    landmarks: np.ndarray
    source: str = ""
    face_count: int = 1
    method: str = "face_mesh"
    framing: str = "fixed"
    transform: np.ndarray | None = None
    picture_size: tuple[int, int] = (0, 0)
    backdrop: np.ndarray | None = None
    placement: tuple[int, int] = (0, 0)
    motion_scale: float = 1.0

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(height, width) of the output frames: the backdrop's, or the square's."""
        source = self.image if self.backdrop is None else self.backdrop
        return int(source.shape[0]), int(source.shape[1])

    @property
    def has_alpha(self) -> bool:
        return self.image.ndim == 3 and self.image.shape[2] == 4
