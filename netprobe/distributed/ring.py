"""The ring all-reduce model: each rank sends 2 (N-1)/N of the buffer through its link.

So time ≈ 2 (N-1)/N × bytes / bus bandwidth, where the bus bandwidth is that of the slowest
link in the ring (nccl-tests, doc/PERFORMANCE.md: busbw = algbw × 2(n-1)/n for all-reduce).
Read forwards it puts an all-reduce on paper; read backwards it turns a measured all-reduce
into the bus bandwidth it reached, comparable with a link's published rate.
"""

from __future__ import annotations


def ring_factor(ranks: int) -> float:
    """The share of the buffer a ring all-reduce sends through each rank's link: 2 (N-1)/N."""
    if ranks < 1:
        raise ValueError("ranks must be at least 1")
    return 2 * (ranks - 1) / ranks


def ring_allreduce_ms(grad_bytes: float, ranks: int, bus_gb_s: float) -> float:
    """Ring all-reduce time of `grad_bytes` over `ranks` at `bus_gb_s` (10^9 B/s): 2 (N-1)/N × bytes / bw."""
    if bus_gb_s <= 0:
        raise ValueError("the bandwidth must be above 0")
    return ring_factor(ranks) * grad_bytes / (bus_gb_s * 1e9) * 1e3


def bus_gb_s(grad_bytes: float, ranks: int, allreduce_ms: float) -> float | None:
    """The bus bandwidth a measured all-reduce reached (the model read backwards); None for 1 rank or 0 ms."""
    if ranks < 2 or allreduce_ms <= 0:
        return None
    return ring_factor(ranks) * grad_bytes / (allreduce_ms / 1e3) / 1e9
