"""`summarize(model)`: the paper-style stage table of any model, as plain data (see `core`)."""

from netprobe.summary.core import DEPTHS, STAGINGS, Summary, check_depth, stage_function, summarize, train_counts
from netprobe.summary.rows import OWN_OPS, Row, describe

__all__ = ["DEPTHS", "OWN_OPS", "STAGINGS", "Row", "Summary", "check_depth", "describe", "stage_function",
           "summarize", "train_counts"]
