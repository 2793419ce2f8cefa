"""``python -m demo``: see demo/app.py."""
from .app import main

raise SystemExit(main())
