"""netprobe's version, in a module of its own: the results database, the cache and the command line say
it without going through the package's face (which would tie them to everything it exports)."""

NETPROBE_VERSION = "0.2.0"
