"""Webcam / video / image-folder pose demo for mssh-keras: ``python -m demo --help``."""
