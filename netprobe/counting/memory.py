"""Memory of a train or inference step, counted on the meta device: exact, not fitted.

The step runs on meta tensors (no memory, no arithmetic) the way PyTorch eager runs it on a GPU:

- parameters, their gradients (allocated for the whole step, as `zero_grad()` without
  `set_to_none` keeps them; torch >= 2.0 frees them between steps, so this is the upper bound)
  and the optimizer's state (SGD momentum: one buffer per parameter; AdamW: two);
- the tensors autograd saves for backward, recorded through `torch.autograd.graph.saved_tensors_hooks`
  (a storage counted once however many views of it are saved; parameters and buffers are not new);
- under AMP, the half copies of the weights that autocast makes once per forward (its cast cache);
- everything else an op allocates, followed from birth to death: a dispatch mode sees every aten
  op's outputs (forward, backward, gradient accumulation), and a weak reference to each tells when
  Python and autograd have let go of it. The peak of those live bytes is the step's peak.

Each allocation is rounded as PyTorch's CUDA caching allocator rounds it (512 bytes; 2 MiB segments
for requests of 10 MiB or more). Then every allocation and free of the step, in order, goes through
a replay of the allocator (netprobe.counting.allocator: best fit, splits, 2 / 20 MiB segments, segments
given back only when wholly free and a cudaMalloc failed), step after step as a training loop makes
them until the allocator's state repeats: `held_on(memory)` is what a device of that memory holds at the
steps' peak (the tensors plus what fragmentation strands; None: it does not fit), `reserved_bytes` the
least device memory they need. The
CUDA context and cuDNN's workspace are not counted: `CUDA_ALLOWANCE_BYTES` is one stated figure for them.

Attention: on meta, torch's scaled-dot-product attention takes its math path, which saves the L x L
weights; CUDA's and CPU's fused kernels save a log-sum-exp per row. For attention models the count
is an upper bound.

AMP is emulated: autocast does not act on meta tensors, so a function mode at the same level
(above autograd) applies CUDA autocast's rules to the ops a CNN uses: convolutions and matrix
products run in half precision on half copies (weights cast once per forward, as autocast's cache
does), softmax, normalisations over features and losses in fp32, everything else in its input's dtype.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from netprobe.counting.allocator import StepTrace, needed_capacity, reserved_within
from netprobe.counting.rules import FREE_META
from netprobe.errors import InputError, quote
from netprobe.tensors import tensors

MODES = ("train", "infer")
AMP_DTYPES = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}
OPTIMIZER_STATES = {"sgd": 1, "adamw": 2, "adam": 2}  # fp32 buffers per parameter: momentum; exp_avg, exp_avg_sq
# PyTorch's CUDA caching allocator (c10/cuda/CUDACachingAllocator.cpp): kMinBlockSize, kSmallSize,
# kMinLargeAlloc, kRoundLarge
ALLOCATOR_BLOCK, SMALL_SIZE, MIN_LARGE_ALLOC, ROUND_LARGE = 512, 2**20, 10 * 2**20, 2 * 2**20

CONTEXT_BYTES = 1000 * 2**20
"""The CUDA context of PyTorch with every kernel of its own, cuDNN's and cuBLAS's loaded when the library is
(CUDA < 11.7, torch < 1.13, e.g. timm's torch 1.12 / CUDA 11.3 runs): "all kernels were loaded into the
context once the library was loaded, which took >1000MB" (ptrblck, pytorch/pytorch#107667). A floor: PyTorch's
own kernels alone take 666,632,192 bytes (pytorch/pytorch#86509, measured after making one tensor, before any
convolution or matmul loads cuDNN or cuBLAS), and cuDNN's about 750 MB more (discuss.pytorch.org/t/74776)."""
WORKSPACE_BYTES = 256 * 2**20
"""cuDNN's convolution workspace and cuBLAS's workspace: 256 MiB, a stated round figure (cuDNN's benchmark
mode asks for what is free, and falls back to an algorithm needing less when it cannot have it)."""
CUDA_ALLOWANCE_BYTES = CONTEXT_BYTES + WORKSPACE_BYTES
"""What a GPU's memory holds beyond the segments of PyTorch's caching allocator: the CUDA context (at least
1000 MiB with eager module loading, pytorch/pytorch#107667) plus 256 MiB for cuDNN/cuBLAS workspaces.
One figure for every model, never tuned per model. The allocator's fragmentation is not in it: it is
replayed (`MemoryCount.held_on`)."""


@dataclass
class MemoryCount:
    """What one step holds at its peak, in bytes (MB in `total_mb` are 2^20 bytes)."""

    mode: str  # "train" | "infer"
    params_bytes: int
    grads_bytes: int  # 0 for infer
    optimizer_bytes: int  # SGD momentum: 1x params; AdamW: 2x; 0 for infer
    saved_bytes: int  # tensors autograd saves for backward, each storage once; 0 for infer
    # the rest of the peak, followed op by op: gradients in flight, outputs and loss (train; the peak is
    # usually where backward starts, so this is the head's gradients); the largest live activation set (infer)
    transient_bytes: int
    amp_copy_bytes: int  # autocast's half copies of weights (fp16/bf16)
    total_bytes: int  # what torch's allocator would hold at peak, before the allowance
    buffers_bytes: int = 0  # batch-norm running statistics and other buffers
    input_bytes: int = 0  # the batch of images (fp32)
    saved_tensors: int = 0  # how many distinct storages autograd saves
    batch: int = 0
    imgsz: tuple[int, int] = (0, 0)
    amp: str = "off"
    channels_last: bool = False
    optimizer: str = "sgd"
    # the step's allocations and frees in order, replayed by netprobe.counting.allocator on first use
    trace: StepTrace | None = field(default=None, repr=False, compare=False)
    _reserved: int | None = field(default=None, repr=False, compare=False)
    _within: dict = field(default_factory=dict, repr=False, compare=False)  # capacity -> reserved_within's answer

    @property
    def reserved_bytes(self) -> int:
        """The least device memory (in 2 MiB steps) in which PyTorch's CUDA caching allocator serves such
        steps until they repeat: total_bytes plus the free parts of segments it cannot use (fragmentation),
        found by replaying capacities in turn (a bisection: about ten replays, more than the count itself
        costs). A step's need on a given device is `held_on`'s one or two replays."""
        if self._reserved is None:
            self._reserved = needed_capacity(self.trace) if self.trace is not None else 0
        return self._reserved

    def total_mb(self) -> float:
        """The peak in MB (2^20 bytes), before the allowance."""
        return self.total_bytes / 2**20

    def needed_bytes(self) -> int:
        """The least the allocator must be able to reserve (the tensors' peak with its fragmentation),
        before the allowance."""
        return max(self.total_bytes, self.reserved_bytes)

    def _reserved_within(self, capacity: int | None) -> int | None:
        if capacity not in self._within:
            self._within[capacity] = reserved_within(self.trace, capacity) if self.trace is not None else 0
        return self._within[capacity]

    def roomy_bytes(self) -> int:
        """What the allocator holds at the steps' peak on a device with room for them (it never gives a
        segment back): what `torch.cuda.max_memory_reserved()` reports there; one replay."""
        return max(self.total_bytes, self._reserved_within(None))

    def held_on(self, memory_bytes: int, allowance_bytes: int = CUDA_ALLOWANCE_BYTES) -> int | None:
        """What the allocator holds at the steps' peak on a device of `memory_bytes` of which the allowance is
        not its own: the replay at that capacity, segments given back under pressure as they would be there
        (on a device with room, the replay without a limit: no second one); None when a request does not
        fit. Capacities do not order the answers near the edge (a replay may fit in less and not in a little
        more), so a device's fit is its own replay, not a comparison with `needed_bytes`."""
        capacity = memory_bytes - allowance_bytes
        if self.total_bytes > capacity:
            return None
        roomy = self.roomy_bytes()
        if roomy <= capacity:
            return roomy
        reserved = self._reserved_within(capacity)
        return None if reserved is None else max(self.total_bytes, reserved)

    def shown_on(self, memory_bytes: int, allowance_bytes: int = CUDA_ALLOWANCE_BYTES) -> tuple[int, bool]:
        """What a row for a device of `memory_bytes` shows, before the allowance: what the device holds at the
        peak and True, or, where the steps do not fit, what a device with room holds and False."""
        held = self.held_on(memory_bytes, allowance_bytes)
        return (self.roomy_bytes(), False) if held is None else (held, True)

    def fits(self, memory_bytes: int, allowance_bytes: int = CUDA_ALLOWANCE_BYTES) -> bool:
        """Whether such steps run on a device of `memory_bytes` beside the allowance (`held_on`)."""
        return self.held_on(memory_bytes, allowance_bytes) is not None


def storage_key(t: torch.Tensor) -> int:
    """The identity of a tensor's storage: views and tensors sharing memory have the same key."""
    return t.untyped_storage()._cdata


def _rounded(nbytes: int) -> int:
    """The bytes PyTorch's CUDA caching allocator takes for a request (c10/cuda/CUDACachingAllocator.cpp):
    every size rounded up to 512 bytes; a request of 10 MiB or more gets a segment of its own, rounded
    up to 2 MiB, whose remainder stays part of the block unless more than 1 MiB (then it is split off
    for other requests). Nothing for an empty tensor."""
    if nbytes == 0:
        return 0
    size = -(-nbytes // ALLOCATOR_BLOCK) * ALLOCATOR_BLOCK
    if size < MIN_LARGE_ALLOC:
        return size
    segment = -(-size // ROUND_LARGE) * ROUND_LARGE
    return segment if segment - size <= SMALL_SIZE else size


_NORMS = ("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
          "_batch_norm_with_update", "_batch_norm_no_update", "cudnn_batch_norm", "native_batch_norm_backward",
          "batch_norm_backward", "cudnn_batch_norm_backward", "native_layer_norm_backward",
          "native_group_norm_backward", "nll_loss_forward")
# The counters' shapes leave out what memory needs here: the batch statistics a norm saves, the
# dtype of a norm's weight gradient under AMP, the loss's total weight. Their own meta kernels run.
_EXACT_META = frozenset(getattr(torch.ops.aten, name) for name in _NORMS)


def _run_op(func, args: tuple, kwargs: dict) -> object:
    """Run an op; on meta, ops whose meta kernels are Python (seconds per step) get their output
    from the counters' shape rules instead, laid out as their first input is (channels_last)."""
    from netprobe.counting.train_rules import train_rule

    rule = train_rule(func.overloadpacket)
    first = args[0] if args and isinstance(args[0], torch.Tensor) else None
    if func.overloadpacket in _FAST_FREE and first is not None and first.is_meta and _plain_layout(first):
        return _FAST_FREE[func.overloadpacket](func, args, kwargs)  # their meta kernels are Python (sympy: seconds)
    if rule is None or rule.meta is None or first is None or not first.is_meta or kwargs.get("out") is not None:
        return func(*args, **kwargs)
    if func.overloadpacket in _EXACT_META:
        return _remembered(func, args, kwargs)
    out = rule.meta(func, args, kwargs)
    if isinstance(out, torch.Tensor) and out is not first and out.shape == first.shape and out.dtype == first.dtype:
        return torch.empty_strided(first.shape, first.stride(), dtype=first.dtype, device=first.device)
    return out


_LAYOUTS: dict[tuple, list] = {}
_FAST_FREE = {op: FREE_META[op] for op in (torch.ops.aten.native_dropout, torch.ops.aten.empty_like,
                                           torch.ops.aten.zeros_like, torch.ops.aten.ones_like)}


def layout_key(func: object, args: tuple, kwargs: dict) -> tuple:
    """A hashable description of an op's call: each tensor by its sizes, strides and dtype, lists,
    tuples and dicts by their items (nested or not), other values as themselves, or by their repr
    where they cannot be hashed. Two calls with equal keys make outputs of the same layouts."""
    def describe(v: object) -> object:
        if isinstance(v, torch.Tensor):
            return "tensor", tuple(v.shape), tuple(v.stride()), v.dtype
        if isinstance(v, (list, tuple)):
            return type(v).__name__, *map(describe, v)
        if isinstance(v, dict):
            return "dict", *sorted(((repr(k), describe(x)) for k, x in v.items()), key=lambda kv: kv[0])
        try:
            hash(v)
        except TypeError:
            return "repr", type(v).__name__, repr(v)
        return v

    return func, describe(args), describe(kwargs)


def _remembered(func, args: tuple, kwargs: dict) -> object:
    """A norm's outputs on meta: made as `norm_outputs` knows them, else its own meta kernel's, run once
    per layout of its arguments (a network repeats a handful), then made again as empty tensors of the
    same sizes, strides and dtypes."""
    def describe(v: object) -> object:
        return (tuple(v.shape), v.stride(), v.dtype) if isinstance(v, torch.Tensor) else v

    key = layout_key(func, args, kwargs)
    if key not in _LAYOUTS:
        out = norm_outputs(func, args, kwargs)
        if out is None:
            out = func(*args, **kwargs)
        _LAYOUTS[key] = [describe(t) if isinstance(t, torch.Tensor) else t for t in (out if isinstance(out, tuple)
                                                                                     else (out,))]
        return out
    made = tuple(torch.empty_strided(v[0], v[1], dtype=v[2], device="meta") if isinstance(v, tuple) else v
                 for v in _LAYOUTS[key])
    return made if len(made) > 1 else made[0]


def _computation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _plain_layout(t: torch.Tensor) -> bool:
    """Dense in one memory format only: the layout element-wise ops give their outputs, unambiguously."""
    if t.ndim == 4:
        return t.is_contiguous() != t.is_contiguous(memory_format=torch.channels_last)
    return t.is_contiguous()


def _dense_like(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)  # empty_like's kernel: Python


def norm_outputs(func, args: tuple, kwargs: dict) -> tuple | None:
    """The outputs of batch norm, its backward and the loss's nll_loss_forward as their meta kernels
    make them (sizes, strides, dtypes), made empty on meta without running those kernels: they are
    Python references whose first call imports torch._dynamo (seconds). None: a case not covered
    here (its own kernel then runs)."""
    a = torch.ops.aten
    if kwargs or not all(isinstance(v, torch.Tensor) and v.is_meta for v in args[:2]):
        return None
    if func is a.native_batch_norm.default:
        x, training, running_mean = args[0], args[5], args[3]
        if not _plain_layout(x) or not (training or running_mean is not None) or x.ndim < 2:
            return None
        stats = [torch.empty(x.shape[1], dtype=_computation_dtype(x.dtype), device="meta") for _ in range(2)]
        return (_dense_like(x), *stats)
    if func is a.native_batch_norm_backward.default:
        grad, x, weight, mask = args[0], args[1], args[2], args[9]
        expanded = 0 in grad.stride() and x.is_contiguous()  # a global pool's gradient, broadcast
        if not _plain_layout(x) or grad.shape != x.shape or not (grad.stride() == x.stride() or expanded):
            return None
        weight_dtype = weight.dtype if weight is not None else x.dtype
        grads = [torch.empty(x.shape[1], dtype=weight_dtype, device="meta") if wanted else None for wanted in mask[1:]]
        return (_dense_like(x), *grads)
    if func is a.nll_loss_forward.default:
        scores, target, weight, reduction = args[:4]
        if weight is not None or scores.ndim != 2:
            return None
        output = torch.empty(target.shape if reduction == 0 else (), dtype=scores.dtype, device="meta")
        return output, torch.empty((), dtype=scores.dtype, device="meta")
    return None


class _LiveStorages(TorchDispatchMode):
    """Every storage an op creates, alive until the last tensor on it dies, and the peak of their sum.

    A tensor's Python object lives as long as its C++ tensor (PyTorch keeps it while autograd holds
    the tensor), so a weak reference to it says when the memory would go back to the allocator.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # as the op counters: no torch._dynamo wrapping of every op (seconds per step)

    def __init__(self, known: set[int]) -> None:
        super().__init__()
        self.known = known  # storages made before the step (parameters, gradients, buffers, input)
        self.size: dict[int, int] = {}
        self.holders: dict[int, int] = {}
        self.live = 0
        self.peak = 0
        self.events: list[tuple] = []  # ("alloc", key, bytes) and ("free", key), in order: the allocator's replay
        self.serial: dict[int, int] = {}  # a live storage's allocation event
        self.grads: set[int] = set()  # allocations of the gradients accumulated into known `.grad`s
        self.grad_storages: set[int] = set()  # the parameters' `.grad`s
        self.accumulated: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = _run_op(func, args, kwargs or {})
        if func is torch.ops.aten.add_.Tensor and self._first_into_grad(storage_key(args[0])):
            self.grads.add(self.serial[storage_key(args[1])])  # AccumulateGrad's `grad += new_grad`
        for t in tensors(out):
            self._track(t)
        return out

    def _first_into_grad(self, key: int) -> bool:
        first = key in self.grad_storages and key not in self.accumulated
        self.accumulated.add(key)
        return first

    def _track(self, t: torch.Tensor) -> None:
        key = storage_key(t)
        if key in self.known:
            return
        if key not in self.size:
            self.size[key] = _rounded(t.untyped_storage().nbytes())
            self.holders[key] = 0
            self.live += self.size[key]
            self.peak = max(self.peak, self.live)
            self.serial[key] = len(self.events)  # storage addresses are reused: an allocation's own name
            self.events.append(("alloc", self.serial[key], t.untyped_storage().nbytes()))
        self.holders[key] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        self.holders[key] -= 1
        if self.holders[key] == 0:
            self.live -= self.size.pop(key)
            del self.holders[key]
            self.events.append(("free", self.serial.pop(key)))


class SavedTensors:
    """The storages autograd saves for backward while it is active, each counted once (views and
    shared storages once); storages in `known` (parameters, buffers) are not new memory."""

    def __init__(self, known: set[int] = frozenset(), copies: set[int] = frozenset()) -> None:
        self.known = known
        self.copies = copies  # storages of AMP's weight copies: counted apart
        self.size: dict[int, int] = {}
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = storage_key(t)
        if key not in self.known and key not in self.copies:
            self.size[key] = t.untyped_storage().nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self.size.values())

    def __enter__(self) -> SavedTensors:
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hooks.__exit__(*exc)


_HALF_OPS = {torch.conv1d, torch.conv2d, torch.conv3d, torch.conv_transpose1d, torch.conv_transpose2d,
             torch.conv_transpose3d, F.linear, F.bilinear, F.prelu, torch.matmul, torch.Tensor.matmul,
             torch.Tensor.__matmul__, torch.Tensor.__rmatmul__, torch.mm, torch.Tensor.mm, torch.bmm,
             torch.Tensor.bmm, torch.addmm, torch.Tensor.addmm, torch.baddbmm, torch.Tensor.baddbmm, torch.mv,
             torch.einsum, F.scaled_dot_product_attention}
_FP32_OPS = {F.softmax, torch.softmax, torch.Tensor.softmax, F.log_softmax, torch.log_softmax,
             torch.Tensor.log_softmax, F.cross_entropy, F.nll_loss, F.binary_cross_entropy_with_logits, F.mse_loss,
             F.l1_loss, F.smooth_l1_loss, F.kl_div, F.layer_norm, F.group_norm, torch.layer_norm, torch.group_norm,
             torch.exp, torch.Tensor.exp, torch.log, torch.Tensor.log, torch.pow, torch.Tensor.pow, torch.sum,
             torch.Tensor.sum, torch.cumsum, torch.Tensor.cumsum, torch.prod, torch.logsumexp, torch.cdist,
             torch.rsqrt, torch.Tensor.rsqrt, torch.norm, torch.Tensor.norm}


class _Autocast(TorchFunctionMode):
    """CUDA autocast's rules for the ops CNNs use, applied above autograd as autocast is, on any device.

    Parameters (leaves that need a gradient) are cast once per forward and kept, as autocast's
    cast cache keeps them; `copies` holds their storages. A function mode does not see inside the
    functions it intercepts, so products inside Python composites (F.multi_head_attention_forward)
    stay in fp32 here, where real autocast would halve them.
    """

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        self.cache: dict[int, torch.Tensor] = {}
        self.copies: set[int] = set()
        self.copy_bytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _HALF_OPS:
            args, kwargs = tree_map(self._half, (args, kwargs))
        elif func in _FP32_OPS:
            args, kwargs = tree_map(self._fp32, (args, kwargs))
        return func(*args, **kwargs)

    def _half(self, v: object) -> object:
        if not isinstance(v, torch.Tensor) or v.dtype != torch.float32:
            return v
        if not (v.requires_grad and v.is_leaf):
            return v.to(self.dtype)
        if id(v) not in self.cache:
            copy = self.cache[id(v)] = v.to(self.dtype)
            self.copies.add(storage_key(copy))
            self.copy_bytes += _rounded(copy.untyped_storage().nbytes())
        return self.cache[id(v)]

    @staticmethod
    def _fp32(v: object) -> object:
        return v.float() if isinstance(v, torch.Tensor) and v.dtype in (torch.float16, torch.bfloat16) else v


def check_choices(mode: str, amp: str, optimizer: str) -> None:
    for name, value, choices in (("mode", mode, MODES), ("amp", amp, tuple(AMP_DTYPES)),
                                 ("optimizer", optimizer, tuple(OPTIMIZER_STATES))):
        if value not in choices:
            raise InputError(f"{name} {quote(value)} is not known; use one of {', '.join(choices)}")


def _empty_as(t: torch.Tensor) -> torch.Tensor:
    """torch.empty_like(t); for a contiguous tensor made directly (on meta, empty_like's kernel is Python
    and its first call imports sympy: most of a second)."""
    if t.is_contiguous():
        return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
    return torch.empty_like(t)


def _stand_in(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A fresh copy of one of the model's tensors (empty on meta): the user's module is never touched."""
    made = _empty_as(t) if t.device.type == "meta" else t.detach().clone()
    if channels_last and made.ndim == 4:
        made = made.contiguous(memory_format=torch.channels_last)
    return made.requires_grad_(t.requires_grad)


def _bytes(ts) -> int:
    return sum(_rounded(t.untyped_storage().nbytes()) for t in {storage_key(t): t for t in ts}.values())


def step_memory(model: nn.Module, example: torch.Tensor, mode: str = "train", amp: str = "off",
                channels_last: bool = False, optimizer: str = "sgd") -> MemoryCount:
    """Count the memory of one step of `model` on `example`, on the device they are on.

    On meta (`prediction.memory.count_memory`) nothing is allocated or computed; on a real device the step
    really runs, with the same hooks, so the two can be compared. The model is run on copies of its
    tensors (`torch.func.functional_call`) and left as it was. A train step is forward, loss
    (cross-entropy for a classifier's logits, else the sum of the outputs) and backward.
    """
    from torch.func import functional_call

    from netprobe.counting.train import surrogate_loss

    check_choices(mode, amp, optimizer)
    train = mode == "train"
    params = {n: _stand_in(p, channels_last) for n, p in model.named_parameters()}
    buffers = {n: _stand_in(b, channels_last) for n, b in model.named_buffers()}
    trainable = [p for p in params.values() if p.requires_grad] if train else []
    for p in trainable:
        p.grad = _empty_as(p)  # kept between steps by zero_grad() without set_to_none
    x = example.contiguous(memory_format=torch.channels_last) if channels_last and example.ndim == 4 else example
    held = [*params.values(), *buffers.values(), *(p.grad for p in trainable), x]
    known = {storage_key(t) for t in held}
    autocast = _Autocast(AMP_DTYPES[amp]) if AMP_DTYPES[amp] is not None else None
    saved = SavedTensors(known, autocast.copies if autocast else set())
    live = _LiveStorages(known)
    live.grad_storages = {storage_key(p.grad) for p in trainable}
    was_training = model.training
    model.train(train)
    try:
        with live, torch.set_grad_enabled(train):
            with saved, autocast or contextlib.nullcontext():
                out = functional_call(model, {**params, **buffers}, (x,))
                scalar = surrogate_loss(out, "auto")[1] if train else None
            if autocast:
                autocast.cache.clear()  # autocast drops its weight copies when the forward's region ends
            if train:
                scalar.backward()
            del out, scalar
    finally:
        model.train(was_training)
    resident = [*params.values(), *buffers.values(), x]  # as the model is moved to the GPU, then the batch
    trace = StepTrace([t.untyped_storage().nbytes() for t in resident], list(live.events),
                      set(live.grads), [p.untyped_storage().nbytes() for p in trainable], OPTIMIZER_STATES[optimizer],
                      train)
    count = _assemble(mode, trainable, params, buffers, x, saved, live, autocast, optimizer)
    count.trace = trace
    return count


def _assemble(mode: str, trainable: list[torch.Tensor], params: dict, buffers: dict, x: torch.Tensor,
              saved: SavedTensors, live: _LiveStorages, autocast: _Autocast | None, optimizer: str) -> MemoryCount:
    train = mode == "train"
    learned = _bytes(trainable)
    fixed = dict(params_bytes=_bytes(params.values()), grads_bytes=learned,
                 optimizer_bytes=OPTIMIZER_STATES[optimizer] * learned if train else 0,
                 buffers_bytes=_bytes(buffers.values()), input_bytes=_bytes([x]))
    copies = autocast.copy_bytes if autocast else 0
    saved_bytes = saved.bytes if train else 0
    return MemoryCount(mode=mode, saved_bytes=saved_bytes, transient_bytes=live.peak - saved_bytes - copies,
                       amp_copy_bytes=copies, total_bytes=sum(fixed.values()) + live.peak,
                       saved_tensors=len(saved.size) if train else 0, batch=x.shape[0], imgsz=tuple(x.shape[-2:]),
                       amp="off" if autocast is None else {v: k for k, v in AMP_DTYPES.items()}[autocast.dtype],
                       channels_last=x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last)
                       and not x.is_contiguous(), optimizer=optimizer, **fixed)
