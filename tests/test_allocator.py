"""The replay of PyTorch's CUDA caching allocator: segment sizes, best fit and splitting, a segment
given back only when wholly free, and out of memory from fragmentation with the live bytes in room."""

from __future__ import annotations

import pytest

from netprobe.counting.allocator import CachingAllocator, OutOfMemory, block_size, segment_size

MiB = 2**20


def test_requests_round_to_512_bytes_and_segments_follow_the_pools() -> None:
    assert block_size(1) == block_size(512) == 512 and block_size(513) == 1024
    assert segment_size(block_size(100)) == 2 * MiB  # small pool: 2 MiB segments
    assert segment_size(MiB + 512) == 20 * MiB  # 1-10 MiB: a 20 MiB segment, split
    assert segment_size(11 * MiB + 512) == 12 * MiB  # 10 MiB or more: rounded up to 2 MiB


def test_best_fit_reuses_and_splits_a_freed_block() -> None:
    alloc = CachingAllocator()
    alloc.malloc("c", 11 * MiB)  # a 12 MiB segment
    alloc.malloc("b", 3 * MiB // 2)  # a 20 MiB segment: 18.5 MiB stay free
    alloc.malloc("a", 100)  # the small pool's 2 MiB
    assert alloc.reserved == (12 + 20 + 2) * MiB
    alloc.free("c")
    alloc.malloc("d", 5 * MiB)  # the smallest free block that fits: c's 12 MiB (7 MiB split off)
    alloc.malloc("e", 6 * MiB)  # the 7 MiB rest, not split again: 1 MiB or less would remain
    assert alloc.reserved == 34 * MiB and alloc.allocated == 3 * MiB // 2 + 512 + 12 * MiB


def test_a_failed_cudamalloc_gives_back_wholly_free_segments_and_retries() -> None:
    alloc = CachingAllocator(capacity=40 * MiB)
    alloc.malloc("a", 30 * MiB)
    alloc.free("a")  # cached: still reserved
    alloc.malloc("b", 32 * MiB)  # 30 + 32 > 40: a's segment goes back, then b's is made
    assert alloc.reserved == 32 * MiB


def test_fragmentation_runs_out_of_memory_with_the_live_bytes_in_room() -> None:
    def run(free_small_first: bool) -> CachingAllocator:
        alloc = CachingAllocator(capacity=44 * MiB)
        alloc.malloc("activation", 30 * MiB)
        alloc.free("activation")
        alloc.malloc("gradient", 2 * MiB)  # taken from the activation's segment, which is now split
        if free_small_first:
            alloc.free("gradient")  # the segment is whole again
        alloc.malloc("next", 30 * MiB)
        return alloc

    assert run(free_small_first=True).reserved == 30 * MiB
    with pytest.raises(OutOfMemory):
        run(free_small_first=False)  # 32 MiB live in 44, but 28 MiB of them are a sliver no one can use
