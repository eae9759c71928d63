"""The analysed portrait: the aligned picture plus its face landmarks.

Portrait analysis (`facecast.face.portrait`) builds it; the renderer
(`facecast.render.renderer`) animates it. Both only share this structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PortraitRig:
    """An aligned, square portrait and its 478 face-mesh landmarks.

    image: (size, size, 3) RGB or (size, size, 4) RGBA, uint8. Alpha is kept
        from RGBA inputs so overlays stay transparent around the avatar.
    landmarks: (478, 3) float32 in output pixels: x right, y down, z depth in
        the same pixel scale (mediapipe's convention: smaller z = nearer the camera).
    source: where the portrait came from (a path or a description), for messages.
    face_count: how many faces the analysis found (the rig uses one of them).
    method: how the landmarks were obtained ("face_mesh", "face_mesh+retry:<how>", "manual").
    """

    image: np.ndarray
    landmarks: np.ndarray
    source: str = ""
    face_count: int = 1
    method: str = "face_mesh"

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def has_alpha(self) -> bool:
        return self.image.ndim == 3 and self.image.shape[2] == 4
