"""The renderer's CUDA path: the same warp as the OpenCV path, in torch (`grid_sample`).

Kept apart from `renderer` so CPU-only renders never pay torch's import time.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from facecast.render.mouth_interior import Patch
from facecast.render.warp_basis import WarpBasis, edge_easing, split_turn, sum_fields


class TorchWarper:
    """The same math in torch (grid_sample), for CUDA."""

    def __init__(self, image: np.ndarray, basis: WarpBasis, device: str) -> None:
        self._device = torch.device(device)
        self._basis = basis
        self._image = torch.from_numpy(image).to(self._device).permute(2, 0, 1)[None].float()
        self._data = {name: torch.from_numpy(f.data).to(self._device) for name, f in basis.fields.items()}
        grid = basis.grid
        self._base = torch.from_numpy(np.stack([grid.x, grid.y], -1)).to(self._device)
        axis = torch.arange(grid.extent, dtype=torch.float32, device=self._device)
        self._pixels = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1)
        self._mask = torch.from_numpy(basis.head_mask).to(self._device)[None, None]
        # (size, size, 2) shares of each pixel's (x, y) displacement kept towards the lower / higher edges
        low, high = (torch.from_numpy(w).to(self._device) for w in edge_easing(grid.size))
        self._towards_low = torch.stack(torch.meshgrid(low, low, indexing="xy"), -1)
        self._towards_high = torch.stack(torch.meshgrid(high, high, indexing="xy"), -1)

    @staticmethod
    def _sample(image: torch.Tensor, pixels: torch.Tensor, padding: str, extent: int) -> torch.Tensor:
        """Bilinear samples of a (1, C, h, w) image covering `extent` pixels at pixel positions (h', w', 2)."""
        normalised = (pixels + 0.5) * (2.0 / extent) - 1.0
        return F.grid_sample(image, normalised[None], mode="bilinear", padding_mode=padding, align_corners=False)

    @torch.inference_mode()
    def render(self, coeffs: dict[str, float], inverse: np.ndarray | None, patches: list[Patch]) -> np.ndarray:
        basis, size, extent = self._basis, self._basis.grid.size, self._basis.grid.extent
        face, turned = split_turn(coeffs)
        flow = torch.zeros_like(self._base)
        sum_fields(flow, self._data, basis, face)
        if inverse is None and not turned:
            source = self._base + flow
        else:
            # back through the rigid head motion, then the head's turn, then the face's fields (`split_turn`)
            q = self._base
            if inverse is not None:
                m = torch.from_numpy(inverse.astype(np.float32)).to(self._device)
                behind = self._base @ m[:, :2].T + m[:, 2]
                mask = self._sample(self._mask, behind, "zeros", extent)[0, 0]
                q = self._base + mask[..., None] * (behind - self._base)
            if turned:
                turn = torch.zeros_like(self._base)
                sum_fields(turn, self._data, basis, turned)
                q = q + self._sample(turn.permute(2, 0, 1)[None], q, "zeros", extent)[0].permute(1, 2, 0)
            source = q + self._sample(flow.permute(2, 0, 1)[None], q, "zeros", extent)[0].permute(1, 2, 0)
        if basis.grid.cells != extent:
            shift = F.interpolate((source - self._base).permute(2, 0, 1)[None], size=(extent, extent),
                                  mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
            source = shift + self._pixels
        shift = source[:size, :size] - self._pixels[:size, :size]   # eased at the frame's edges (`edge_easing`)
        source = self._pixels[:size, :size] + shift.clamp(min=0) * self._towards_high \
            + shift.clamp(max=0) * self._towards_low
        out = self._sample(self._image, source, "border", size)[0]
        for patch in patches:
            h, w = patch.alpha.shape
            colour = torch.from_numpy(patch.colour).to(self._device).permute(2, 0, 1)
            alpha = torch.from_numpy(patch.alpha).to(self._device)[None]
            region = out[:3, patch.y0:patch.y0 + h, patch.x0:patch.x0 + w]
            region += alpha * (colour - region)
        return out.round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
