"""The results database: every `bench` and `compare` run (and `summary --save`) kept in one SQLite
file with the machine it ran on, listed, exported, imported and reported on across machines.

    db = netprobe.history.open()              # $NETPROBE_DB, else the user data folder's results.sqlite
    db.runs(spec="efficientnet_b4")           # Run records, newest first
    db.results(machine="EPYC")                # Result records: one per row, its run's columns beside
    db.dataframe(command="compare")           # the same as a pandas DataFrame

Modules: `store` (the file, schema, migrations), `tables` (a run document as rows), `record`
(an envelope and the machine as a document), `query` (filters), `transfer` (export, import),
`api` (this face), `report` (the cross-machine report), `page` and `svg` (its HTML).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netprobe.lazy import exports

__all__ = ["History", "HistoryError", "Result", "Run", "default_path", "open"]

if TYPE_CHECKING:
    from netprobe.history.api import History, Result, Run, open
    from netprobe.history.store import HistoryError, default_path

__getattr__, __dir__ = exports("netprobe.history", {"api": ("History", "Result", "Run", "open"),
                                                    "store": ("HistoryError", "default_path")}, globals())
