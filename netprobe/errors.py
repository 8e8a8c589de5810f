"""Errors meant for users: each carries one line saying what was wrong and what would be right."""


class NetprobeError(Exception):
    """Base class of every error netprobe reports to a user as one line (exit code 2)."""


class SpecError(NetprobeError, ValueError):
    """A spec string (or a stage table) is malformed or describes an impossible network."""


class InputError(NetprobeError, ValueError):
    """A command-line value (image size, batch, device, ...) is out of range or unavailable."""
