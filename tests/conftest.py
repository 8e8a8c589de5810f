"""Test-wide settings: netprobe's count cache goes to a temporary folder, never the user's own."""

import os
import tempfile


def pytest_configure(config):
    os.environ.setdefault("NETPROBE_CACHE_DIR", tempfile.mkdtemp(prefix="netprobe-test-cache-"))
