"""PyTorch's CUDA caching allocator, replayed on a step's allocations: how much device memory a step
needs reserved, fragmentation included, beyond the bytes its tensors hold at their peak.

The rules are those of c10/cuda/CUDACachingAllocator.cpp (torch 1.x and 2.x without
`expandable_segments`, `max_split_size_mb` unset):

- every request is rounded up to 512 bytes; requests of at most 1 MiB come from the small pool,
  larger ones from the large pool; a block freed goes back to its pool and can serve any later
  request of that pool, on the same stream (one stream here);
- a request takes the smallest free block of its pool that is big enough (ties: the lower address);
  if there is none, a new segment is reserved from the device (cudaMalloc): 2 MiB for a small
  request, 20 MiB for one under 10 MiB, else the request rounded up to 2 MiB;
- a block bigger than the request is split, the rest staying free in the pool: in the small pool
  if at least 512 bytes remain, in the large pool if more than 1 MiB remains;
- a freed block merges with free neighbours of its own segment; segments are returned to the
  device only when a cudaMalloc fails, and only those wholly free; then the cudaMalloc is retried,
  and out of memory is raised if it fails again.

So a step can run out of memory although its live tensors fit: the free parts of segments that
are partly in use (a 400 MB activation's segment now holding a few gradients) serve no request
bigger than themselves and cannot be given back.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass

MIN_BLOCK = 512  # kMinBlockSize: every request rounded up to it
SMALL_SIZE = 2**20  # kSmallSize: the largest small request; also the largest large-pool remainder not split off
SMALL_BUFFER = 2 * 2**20  # kSmallBuffer: a small pool segment
LARGE_BUFFER = 20 * 2**20  # kLargeBuffer: the segment of a request between 1 and 10 MiB
MIN_LARGE_ALLOC = 10 * 2**20  # kMinLargeAlloc
ROUND_LARGE = 2 * 2**20  # kRoundLarge: a request of 10 MiB or more gets a segment rounded up to it
ADDRESS_BITS = 56  # addresses only grow (a segment given back is not reused): 64 PiB of them
ADDRESS_MASK = (1 << ADDRESS_BITS) - 1


def block_size(nbytes: int) -> int:
    """The block a request of `nbytes` takes (round_size): at least 512 bytes, a multiple of 512."""
    return -(-nbytes // MIN_BLOCK) * MIN_BLOCK or MIN_BLOCK  # no max(): a replay asks thousands of times a step


def segment_size(size: int) -> int:
    """The segment reserved from the device for a block of `size` when no free block fits
    (get_allocation_size)."""
    if size <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return -(-size // ROUND_LARGE) * ROUND_LARGE


@dataclass(eq=False, slots=True)
class _Block:
    address: int
    size: int
    small: bool
    allocated: bool = False
    prev: _Block | None = None  # neighbours in the same segment
    next: _Block | None = None


class OutOfMemory(Exception):
    """A request the allocator could not serve within its capacity."""


class CachingAllocator:
    """A replay of the CUDA caching allocator over at most `capacity` bytes of device memory."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity  # None: the device never runs out (nothing is ever given back)
        self.reserved = 0
        self.peak_reserved = 0
        self.allocated = 0
        self.peak_allocated = 0
        # each pool's free blocks as sorted ints size << ADDRESS_BITS | address: the smallest block that is big
        # enough, ties to the lower address, is one bisection away (ints compare faster than tuples)
        self._small: list[int] = []
        self._large: list[int] = []
        self._at: dict[int, _Block] = {}  # free blocks by address
        self._blocks: dict[object, _Block] = {}  # live allocations by key
        self._next_address = 0

    def malloc(self, key: object, nbytes: int) -> None:
        """Allocate `nbytes` for `key`; raises OutOfMemory when the device has no room left."""
        if nbytes == 0:
            return
        size, small, pool, i = self._lookup(nbytes)
        # the smallest free block that is big enough, else a new segment
        block = self._at.pop(pool.pop(i) & ADDRESS_MASK) if i < len(pool) else self._new_segment(size, small)
        remaining = block.size - size
        if remaining >= MIN_BLOCK if small else remaining > SMALL_SIZE:
            rest = _Block(block.address + size, remaining, small, False, block, block.next)
            if block.next:
                block.next.prev = rest
            block.next, block.size = rest, size
            insort(pool, remaining << ADDRESS_BITS | rest.address)
            self._at[rest.address] = rest
        block.allocated = True
        self._blocks[key] = block
        self.allocated += block.size
        if self.allocated > self.peak_allocated:
            self.peak_allocated = self.allocated

    def free(self, key: object) -> None:
        """Give `key`'s block back to its pool, merged with free neighbours of its segment."""
        block = self._blocks.pop(key, None)
        if block is None:
            return
        self.allocated -= block.size
        block.allocated = False
        pool, at = (self._small if block.small else self._large), self._at
        prev, after = block.prev, block.next
        if prev is not None and not prev.allocated:
            del pool[bisect_left(pool, prev.size << ADDRESS_BITS | prev.address)]
            del at[prev.address]
            block.address, block.prev, block.size = prev.address, prev.prev, block.size + prev.size
            if prev.prev:
                prev.prev.next = block
        if after is not None and not after.allocated:
            del pool[bisect_left(pool, after.size << ADDRESS_BITS | after.address)]
            del at[after.address]
            block.next, block.size = after.next, block.size + after.size
            if after.next:
                after.next.prev = block
        insort(pool, block.size << ADDRESS_BITS | block.address)
        at[block.address] = block

    def _lookup(self, nbytes: int) -> tuple[int, bool, list[int], int]:
        """A request's block size, whether it is small, its pool, and the index in that pool of the smallest
        free block big enough for it (the pool's length: there is none)."""
        size = block_size(nbytes)
        small = size <= SMALL_SIZE
        pool = self._small if small else self._large
        return size, small, pool, bisect_left(pool, size << ADDRESS_BITS)

    def probe(self, nbytes: int) -> None:
        """`malloc` then `free` of one request with nothing between (an optimizer's temporary), at the cost
        of a lookup: a block taken from a pool merges back as it was, so the state after is the state before,
        unless no free block was big enough and a segment was reserved (and, short of capacity, cached ones
        given back first), which then stays in its pool, free."""
        if nbytes == 0:
            return
        size, small, pool, i = self._lookup(nbytes)
        if i < len(pool):
            taken = pool[i] >> ADDRESS_BITS
        else:
            block = self._new_segment(size, small)
            insort(pool, block.size << ADDRESS_BITS | block.address)
            self._at[block.address] = block
            taken = block.size
        if taken - size >= MIN_BLOCK if small else taken - size > SMALL_SIZE:
            taken = size  # split: the request holds its own size only
        if self.allocated + taken > self.peak_allocated:
            self.peak_allocated = self.allocated + taken

    def layout(self) -> tuple:
        """Every block in address order as (size, in use, starts a segment): two equal layouts serve the
        same requests alike (segments never overlap, so only the order of addresses matters)."""
        blocks = sorted([*self._at.values(), *self._blocks.values()], key=lambda b: b.address)
        return tuple((b.size, b.allocated, b.prev is None) for b in blocks)

    def _new_segment(self, size: int, small: bool) -> _Block:
        nbytes = segment_size(size)
        if self.capacity is not None and self.reserved + nbytes > self.capacity:
            self._release_free_segments()
            if self.reserved + nbytes > self.capacity:
                raise OutOfMemory(f"{nbytes} bytes more do not fit in {self.capacity} ({self.reserved} reserved)")
        self.reserved += nbytes
        if self.reserved > self.peak_reserved:
            self.peak_reserved = self.reserved
        block = _Block(self._next_address, nbytes, small)
        self._next_address += nbytes
        return block

    def _release_free_segments(self) -> None:
        """release_cached_blocks: every free block that is a whole segment goes back to the device."""
        for block in [b for b in self._at.values() if b.prev is None and b.next is None]:
            pool = self._small if block.small else self._large
            del pool[bisect_left(pool, block.size << ADDRESS_BITS | block.address)]
            del self._at[block.address]
            self.reserved -= block.size


@dataclass
class StepTrace:
    """A step's requests to the allocator, as plain data: what is resident before it, and each
    allocation (key, bytes) and free (key) of the step in order."""

    resident: list[int]  # parameters, buffers and the input batch, in bytes, in the order they are made
    events: list[tuple]  # ("alloc", key, bytes) | ("free", key)
    grads: set  # keys of the gradients a step accumulates into `.grad`: the first step keeps them as `.grad`
    params: list[int]  # the trainable parameters' bytes, in order (the optimizer's state is made per parameter)
    states: int  # optimizer buffers per parameter (SGD momentum 1, AdamW 2); train steps only
    train: bool


MAX_STEPS = 50  # timm's benchmark: 10 warm-up steps and 40 timed ones


def _start(trace: StepTrace, capacity: int | None) -> CachingAllocator:
    alloc = CachingAllocator(capacity)
    for i, nbytes in enumerate(trace.resident):
        alloc.malloc(("resident", i), nbytes)
    return alloc


def _step(alloc: CachingAllocator, trace: StepTrace, step: int) -> None:
    """One step's requests. As a training loop makes them: the first backward keeps each accumulated
    gradient as the parameter's `.grad` (AccumulateGrad steals it), then the optimizer's first step
    makes its state; later steps add into `.grad` in place and free the gradient. Each parameter's
    update makes one temporary of its size (SGD with Nesterov momentum, timm's; AdamW's denominator)."""
    base = step * len(trace.events)  # an event's key is its index in the step: unique across steps this way
    malloc, free, grads = alloc.malloc, alloc.free, trace.grads
    for event in trace.events:
        if event[0] == "alloc":
            malloc(base + event[1], event[2])
        elif step > 0 or event[1] not in grads:
            free(base + event[1])
    for i, nbytes in enumerate(trace.params if trace.train else ()):
        for state in range(trace.states if step == 0 else 0):
            alloc.malloc(("state", i, state), nbytes)
        alloc.probe(nbytes)


def replay(trace: StepTrace, capacity: int | None) -> tuple[int, CachingAllocator]:
    """Run steps of `trace` through an allocator of `capacity` bytes (OutOfMemory if one does not fit)
    until a step ends with the allocator as an earlier one ended (from then on the steps repeat: the
    replay is deterministic), at most MAX_STEPS; how many steps that took, and the allocator."""
    alloc = _start(trace, capacity)
    seen = set()
    for step in range(MAX_STEPS):
        _step(alloc, trace, step)
        layout = alloc.layout()
        if step > 0 and layout in seen:
            return step + 1, alloc
        seen.add(layout)
    return MAX_STEPS, alloc


def reserved_within(trace: StepTrace, capacity: int | None) -> int | None:
    """The most the allocator reserves over the steps of `trace` (until they repeat) on a device that
    lets it reserve `capacity` bytes (None: a device with room, where nothing is ever given back): what
    `torch.cuda.max_memory_reserved()` would report there; None when a request does not fit."""
    try:
        return replay(trace, capacity)[1].peak_reserved
    except OutOfMemory:
        return None


def needed_capacity(trace: StepTrace) -> int:
    """The least device memory (in 2 MiB steps) in which the allocator serves every request of the
    steps up to its steady state: the tensors' peak plus the free pieces of segments it holds and
    cannot use. With less memory it gives segments back on the way, so each capacity is replayed."""
    unlimited = replay(trace, None)[1]
    lo, hi = -(-unlimited.peak_allocated // ROUND_LARGE) - 1, -(-unlimited.peak_reserved // ROUND_LARGE)
    while hi - lo > 1:  # lo does not fit (below the tensors' peak), hi does (nothing ever given back)
        mid = (lo + hi) // 2
        try:
            replay(trace, mid * ROUND_LARGE)
            hi = mid
        except OutOfMemory:
            lo = mid
    return hi * ROUND_LARGE
