"""Suite-wide settings. Each area keeps its own fixtures in its folder's conftest.py."""

from __future__ import annotations

import os

# No model hub is reachable: anything that would download must fail loudly instead.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
