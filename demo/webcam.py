"""``python demo/webcam.py [options]``: same as ``python -m demo``, runnable as a script."""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.app import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
