"""`--cutout`: the portrait's person cut out once, as the rig's alpha, with the head mask as fallback.

Segmentation is `facecast.face.cutout` (mediapipe's selfie-segmentation model, refined);
where it sees no person (a cartoon, a statue) the renderer's own head mask
(`facecast.render.warp_basis.head_mask_image`) stands in, and one line says so.
The renderer warps the alpha with the head, so the cut-out costs nothing more per
frame than warping a fourth channel.
"""

from __future__ import annotations

import logging

from facecast.errors import InputError
from facecast.face.cutout import person_alpha, with_alpha
from facecast.render.warp_basis import head_mask_image
from facecast.rig import PortraitRig

log = logging.getLogger("facecast.cutout")


def cut_out(rig: PortraitRig) -> PortraitRig:
    """The rig with the person (or, failing that, the head) as its alpha channel."""
    if rig.backdrop is not None:
        # framing "full" keeps the whole picture, its background included: nothing is there to cut out
        raise InputError("--cutout works with --framing auto, face or picture, not full (which keeps the "
                         "whole picture, background included)")
    matte = person_alpha(rig.image, rig.landmarks)
    if matte is None:
        log.warning("cut-out: no person found in %s by segmentation; using the head mask instead",
                    rig.source or "the portrait")
        matte = head_mask_image(rig.landmarks, rig.size)
    return with_alpha(rig, matte)
