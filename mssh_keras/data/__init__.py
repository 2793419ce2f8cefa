"""Datasets. Every source yields example dicts:

image uint8 (H, W, 3) RGB; joints float32 (K, 2) 0-based pixels; flags int32 (K,)
(2 visible, 1 annotated but occluded, 0 not annotated: masked); center float32 (2,);
scale float32 () the padded square person box side in pixels; image_id string.
"""
