"""Test-wide settings: netprobe's count cache and results database go to a temporary folder, never the
user's own."""

import os
import tempfile


def pytest_configure(config):
    os.environ.setdefault("NETPROBE_CACHE_DIR", tempfile.mkdtemp(prefix="netprobe-test-cache-"))
    # set, not defaulted: a NETPROBE_DB of the developer's own must not receive test runs
    os.environ["NETPROBE_DB"] = os.path.join(tempfile.mkdtemp(prefix="netprobe-test-db-"), "results.sqlite")
