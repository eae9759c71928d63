"""The automatic cut-out: the person separated from the background, once per portrait, as the rig's alpha.

`person_alpha` runs mediapipe's selfie-segmentation model (`face.tracker.PersonSegmenter`)
on the aligned portrait and refines its coarse, upsampled mask into a matte:

* a guided filter with the portrait as guide snaps the mask's edge to the picture's
  own edges (hair strands, the outline of the shoulders) instead of the model's blur;
* a soft threshold keeps the core opaque and the background fully transparent, and a
  small blur feathers what is left of the edge by about a pixel;
* the face itself (the face-mesh oval) is always opaque: glasses, face paint or a
  painted face the model half misses must not turn into holes.

`with_alpha` stores a matte as the rig's alpha channel, so the renderer moves it with
the same warp as the head (no per-frame segmentation: nothing can flicker but the warp
itself). It also replaces the colour of semi-transparent edge pixels by an estimate of
the person's own colour (blur-fusion foreground estimation), so the old background
does not show as a halo when the avatar is put on a new one.

When the model finds no person on the face (a cartoon, a drawing), `person_alpha`
returns None and the caller falls back to another mask (the app uses the renderer's
head mask).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from facecast import face_regions as fr
from facecast.face.tracker import PersonSegmenter
from facecast.face_model import smoothstep
from facecast.rig import PortraitRig

#: The model finds the person when its mean confidence over the face oval reaches this.
MIN_FACE_CONFIDENCE = 0.5
#: Guided-filter radius (share of the portrait size) and regularisation (on 0..1 grey levels squared).
GUIDE_RADIUS = 1 / 96
GUIDE_EPS = 1e-3
#: Soft threshold of the refined confidence: below LOW transparent, above HIGH opaque.
SOFT_LOW, SOFT_HIGH = 0.2, 0.8
#: Feathering blur (pixels at a 512 px portrait; scales with the size).
FEATHER_SIGMA = 0.8
#: The face oval is shrunk by this share of its size before it is made opaque (its edge is the cheek outline).
FACE_OVAL_INSET = 0.04
#: Blur-fusion radii (share of the size), coarse then fine: Forte & Pitié, "Approximate fast foreground colour
#: estimation", ICIP 2021.
FOREGROUND_RADII = (0.18, 0.012)


def person_alpha(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """(size, size) float32 matte 0..1 of the person in an aligned RGB(A) portrait, or None when the
    segmentation model does not see a person on the face (`MIN_FACE_CONFIDENCE`)."""
    rgb = np.ascontiguousarray(image[..., :3])
    with PersonSegmenter() as segmenter:
        confidence = segmenter.confidence(rgb)
    face = face_oval_mask(landmarks, image.shape[0], inset=0.0)
    if float(confidence[face > 0.5].mean()) < MIN_FACE_CONFIDENCE:
        return None
    size = image.shape[0]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    refined = guided_filter(grey, confidence, max(1, round(GUIDE_RADIUS * size)), GUIDE_EPS)
    alpha = smoothstep(SOFT_LOW, SOFT_HIGH, refined).astype(np.float32)
    alpha = cv2.GaussianBlur(alpha, (0, 0), FEATHER_SIGMA * size / 512)
    return np.maximum(alpha, face_oval_mask(landmarks, size, inset=FACE_OVAL_INSET))


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (grey guide): `source` smoothed but with the edges of `guide`.

    Box filters only, so it costs a few milliseconds at 512 px (once per portrait)."""
    def mean(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, cv2.CV_32F, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = mean(guide), mean(source)
    var_i = mean(guide * guide) - mean_i * mean_i
    a = (mean(guide * source) - mean_i * mean_p) / (var_i + eps)
    b = mean_p - a * mean_i
    return np.clip(mean(a) * guide + mean(b), 0.0, 1.0)


def face_oval_mask(landmarks: np.ndarray, size: int, inset: float) -> np.ndarray:
    """(size, size) float32: 1 inside the face-mesh oval (shrunk by `inset` of its extent), 0 outside."""
    oval = np.asarray(landmarks, np.float64)[list(fr.FACE_OVAL), :2]
    centre = oval.mean(axis=0)
    oval = centre + (oval - centre) * (1.0 - 2.0 * inset)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(oval * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
    return mask.astype(np.float32) / 255.0


def with_alpha(rig: PortraitRig, matte: np.ndarray) -> PortraitRig:
    """The rig as RGBA with `matte` (0..1) as alpha (multiplied into the picture's own alpha, if it has one)
    and the colour of its semi-transparent pixels estimated as the person's own."""
    rgb = rig.image[..., :3].astype(np.float32) / 255.0
    alpha = np.clip(matte, 0.0, 1.0).astype(np.float32)
    if rig.has_alpha:
        alpha = alpha * (rig.image[..., 3].astype(np.float32) / 255.0)
    colour = foreground_colour(rgb, alpha)
    out = np.dstack([np.rint(colour * 255.0), np.rint(alpha * 255.0)]).astype(np.uint8)
    return replace(rig, image=out)


def foreground_colour(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blur-fusion estimate of the foreground colour F in rgb = F * a + B * (1 - a) (float 0..1 in and out).

    Opaque pixels keep their colour exactly; in the edge band F is pulled towards nearby person colours."""
    size = alpha.shape[0]
    a = alpha[..., None]
    foreground, background = rgb, rgb
    for share in FOREGROUND_RADII:
        k = 2 * max(1, round(share * size)) + 1

        def blur(x: np.ndarray, k: int = k) -> np.ndarray:
            return cv2.blur(x, (k, k), borderType=cv2.BORDER_REFLECT)

        blurred_a = blur(alpha)[..., None]
        blurred_f = blur(foreground * a) / (blurred_a + 1e-5)
        blurred_b = blur(background * (1.0 - a)) / ((1.0 - blurred_a) + 1e-5)
        foreground = np.clip(blurred_f + a * (rgb - a * blurred_f - (1.0 - a) * blurred_b), 0.0, 1.0)
        background = np.clip(blurred_b, 0.0, 1.0)
    return np.where(a >= 1.0, rgb, foreground)
