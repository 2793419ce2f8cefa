"""Heatmaps -> keypoints at run time: the flip test, and the codec's decoding (numpy only).

The decoding itself (argmax + quarter-pixel shift, heatmap pixel -> input crop -> image)
is ``mssh_keras.codec``'s; its functions are re-exported here for the callers that
decode raw heatmaps without a ``HeatmapCodec``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .codec import check_heatmaps, decode_heatmaps, heatmap_coords_to_image

__all__ = ["decode_heatmaps", "flip_back", "heatmap_coords_to_image"]


def flip_back(heatmaps: np.ndarray, flip_permutation: Sequence[int]) -> np.ndarray:
    """Undo a horizontal input flip on predicted heatmaps: mirror x, swap left/right channels.

    Flip test: ``(hm + flip_back(hm_of_flipped_input, skeleton.flip_permutation)) / 2``.
    With the codec's convention a flip is x -> W-1-x in input *and* heatmap space (heatmap
    pixel u covers input pixels [u*s, (u+1)*s), which the flip maps onto heatmap pixel
    w-1-u exactly), so no extra one-pixel shift is needed, unlike HRNet's flip_back.
    """
    hm = check_heatmaps(heatmaps)
    perm = np.asarray(list(flip_permutation), dtype=np.int64)
    k = hm.shape[-1]
    if perm.shape != (k,) or sorted(perm.tolist()) != list(range(k)):
        raise ValueError(f"flip_permutation must be a permutation of range({k}) "
                         f"(the heatmaps' channels), got {perm.tolist()}")
    return hm[..., ::-1, :][..., perm]
