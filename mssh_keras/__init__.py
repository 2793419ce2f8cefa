"""mssh-keras: Multi-Scale Stacked Hourglass pose estimation (Keras 3).

Kept import-free so the TF-free runtime paths (LiteRT, ONNX Runtime) stay fast.
"""
__version__ = "0.1.0"
