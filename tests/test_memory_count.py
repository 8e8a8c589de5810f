"""Memory of a step counted on meta: the saved tensors equal what the same hooks record in a real CPU
train step (every zoo arch, two detectors, the foreign nets), hand-derived bytes for a small net,
optimizer state and AMP copies, and the largest batch that fits."""

from __future__ import annotations

import contextlib

import fixtures_foreign as ff
import pytest
import torch
from torch import nn
from zoo_cases import ZOO

import netprobe
from netprobe.counting.allocator import OutOfMemory
from netprobe.counting.memory import CUDA_ALLOWANCE_BYTES, layout_key, norm_outputs, step_memory
from netprobe.errors import InputError
from netprobe.prediction.memory import count_memory, predicted_max_batch
from netprobe.target import resolve


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The counts do not depend on threads; on a loaded 2-core machine two OpenMP threads spin (100x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_same_step(meta: object, real: nn.Module, example: torch.Tensor, real_context=contextlib.nullcontext,
                     **options) -> tuple:
    """The count on meta and the real CPU step save the same storages, and peak at the same live bytes."""
    counted = count_memory(meta, example.shape[0], tuple(example.shape[-2:]), **options)
    torch.manual_seed(0)
    with real_context():
        measured = step_memory(real, example, **options)
    assert counted.saved_tensors == measured.saved_tensors > 0
    assert counted.saved_bytes == measured.saved_bytes
    # the peak of live bytes: equal for the zoo; within 24 KiB for the foreign nets, whose big classifiers'
    # backward makes a few CPU-only temporaries of a feature vector (ResNet-50: 3 x 8 KiB of 309 MiB)
    assert counted.total_bytes == pytest.approx(measured.total_bytes, rel=1e-4, abs=0)
    return counted, measured


@pytest.mark.parametrize("arch", ZOO)
def test_zoo_saved_tensors_on_meta_equal_a_real_cpu_step(arch: str) -> None:
    # A quarter of the width: the same blocks and stages, a fraction of the time (as test_archs does).
    spec = f"{arch}:classes=10,drop_path=0,width=0.25"
    counted, measured = assert_same_step(spec, netprobe.build(spec), torch.randn(2, 3, 32, 32))
    assert counted.total_bytes == measured.total_bytes


@pytest.mark.parametrize("options", [dict(amp="bf16"), dict(amp="fp16", channels_last=True), dict(channels_last=True)],
                         ids=["bf16", "fp16-channels-last", "channels-last"])
def test_amp_and_channels_last_saved_tensors_on_meta_equal_a_real_cpu_step(options: dict) -> None:
    spec = "efficientnetv2_s:classes=10,drop_path=0,width=0.25"
    counted, measured = assert_same_step(spec, netprobe.build(spec), torch.randn(2, 3, 32, 32), **options)
    assert counted.total_bytes == measured.total_bytes and counted.amp_copy_bytes == measured.amp_copy_bytes


@pytest.mark.parametrize("name", ["yolov8n", "yolov8n-pose"])
def test_detector_saved_tensors_on_meta_equal_a_real_cpu_step(name: str) -> None:
    assert_same_step(name, resolve(name).make("cpu"), torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("name,side", [("resnet50", 64), ("vit_b_16", 224), ("vit_b_16_explicit", 224),
                                       ("mobilenet_v2", 64), ("convnext_tiny", 64), ("unet", 64)])
def test_foreign_saved_tensors_on_meta_equal_a_real_cpu_step(name: str, side: int) -> None:
    with torch.device("meta"):
        meta = getattr(ff, name)()
    torch.manual_seed(0)
    real = getattr(ff, name)()
    for p in real.parameters():  # the fixtures leave some weights uninitialised: keep the arithmetic finite
        nn.init.normal_(p, std=0.02)
    # On meta torch's attention is the math one (it saves the L x L weights); on CPU it would pick its fused
    # kernel, which saves a log-sum-exp per row instead. The same algorithm on both sides:
    math_attention = contextlib.nullcontext
    if name == "vit_b_16":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def math_attention():
            return sdpa_kernel(SDPBackend.MATH)
    assert_same_step(meta, real, torch.randn(1, 3, side, side), math_attention)


def test_hand_derived_bytes_a_view_counted_once_and_amp_copies() -> None:
    n, h, w = 2, 8, 8
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(8, 8, 1, bias=False))
    fp32 = count_memory(model, n, (h, w))
    # ReLU saves its output and the second conv saves its input: one storage. The image and the weights
    # are not new memory. The output is 4-d, so the loss is its sum (whose backward saves nothing).
    assert fp32.saved_bytes == n * 8 * h * w * 4
    # two weights (864 and 256 bytes) in 512-byte blocks
    assert fp32.params_bytes == fp32.grads_bytes == fp32.optimizer_bytes == 1024 + 512
    assert fp32.amp_copy_bytes == 0
    half = count_memory(model, n, (h, w), amp="fp16")
    # autocast: the image cast to half for the first conv, the ReLU output in half; weights copied once each
    assert half.saved_bytes == n * 3 * h * w * 2 + n * 8 * h * w * 2
    assert half.amp_copy_bytes == 2 * 512
    assert half.total_bytes == sum((half.params_bytes, half.grads_bytes, half.optimizer_bytes, half.saved_bytes,
                                    half.transient_bytes, half.amp_copy_bytes, half.buffers_bytes, half.input_bytes))


def test_optimizer_state_inference_and_growth_with_batch() -> None:
    spec = "resnet18:classes=10"
    sgd = count_memory(spec, 4, 64)
    adamw = count_memory(spec, 4, 64, optimizer="adamw")
    assert sgd.params_bytes == sgd.grads_bytes == sgd.optimizer_bytes >= 4 * 11_181_642
    assert adamw.optimizer_bytes == 2 * sgd.optimizer_bytes
    assert adamw.total_bytes == sgd.total_bytes + sgd.optimizer_bytes
    infer = count_memory(spec, 4, 64, mode="infer")
    assert infer.saved_bytes == infer.grads_bytes == infer.optimizer_bytes == 0
    assert infer.params_bytes == sgd.params_bytes and 0 < infer.transient_bytes < sgd.saved_bytes
    double = count_memory(spec, 8, 64)
    assert double.saved_bytes == pytest.approx(2 * sgd.saved_bytes, rel=0.01)  # activations grow with the batch


def test_predicted_max_batch_is_the_edge_of_what_fits() -> None:
    spec = "efficientnet_b0:classes=10,drop_path=0"
    per_image = count_memory(spec, 2, 64).total_bytes - count_memory(spec, 1, 64).total_bytes
    memory = CUDA_ALLOWANCE_BYTES + count_memory(spec, 1, 64).needed_bytes() + 40 * per_image + per_image // 2
    best = predicted_max_batch(spec, 64, memory)
    assert count_memory(spec, best, 64).fits(memory) and not count_memory(spec, best + 1, 64).fits(memory)
    assert 35 <= best <= 45
    assert predicted_max_batch(spec, 64, memory, limit=7) == 7
    assert predicted_max_batch(spec, 64, CUDA_ALLOWANCE_BYTES) == 0  # not one image fits beside the context


@pytest.mark.parametrize("options,words", [(dict(mode="eval"), "mode 'eval' is not known"),
                                           (dict(amp="fp8"), "amp 'fp8' is not known"),
                                           (dict(optimizer="lion"), "optimizer 'lion' is not known")])
def test_unknown_choices_are_one_line(options: dict, words: str) -> None:
    with pytest.raises(InputError, match=words):
        count_memory("resnet18", 1, 64, **options)


def test_what_the_allocator_must_reserve_is_at_least_the_peak_in_2_mib_steps() -> None:
    count = count_memory("efficientnet_b0:classes=10,drop_path=0", 8, 64, amp="fp16")
    assert count.reserved_bytes % 2**20 == 0 and count.total_bytes <= count.reserved_bytes == count.needed_bytes()
    assert count.fits(count.reserved_bytes + CUDA_ALLOWANCE_BYTES)
    assert not count.fits(count.reserved_bytes - 2 * 2**20 + CUDA_ALLOWANCE_BYTES)


def test_a_device_holds_its_own_replay_and_one_with_room_holds_the_most() -> None:
    from netprobe.counting.allocator import replay

    count = count_memory("resnet18:classes=10", 8, 64, amp="fp16")
    roomy = count.roomy_bytes()
    assert roomy == max(count.total_bytes, replay(count.trace, None)[1].peak_reserved) > count.needed_bytes()
    assert count.held_on(10 * roomy + CUDA_ALLOWANCE_BYTES) == count.held_on(roomy + CUDA_ALLOWANCE_BYTES) == roomy
    for capacity in range(count.total_bytes, roomy, 2**20):  # short of room: each capacity its own replay
        held = count.held_on(capacity + CUDA_ALLOWANCE_BYTES)
        try:
            expected = max(count.total_bytes, replay(count.trace, capacity)[1].peak_reserved)
        except OutOfMemory:
            expected = None
        assert held == expected and (held is None or held <= capacity)
        assert count.fits(capacity + CUDA_ALLOWANCE_BYTES) is (held is not None)
    assert count.held_on(count.total_bytes - 1 + CUDA_ALLOWANCE_BYTES) is None  # below the tensors' peak: no replay


@pytest.mark.parametrize("args", [([1, [2, [3]]], [None, None, True]), (torch.float16, torch.device("meta"), None),
                                  ({"dims": [0, 1], "out": None}, {1, 2}, bytearray(b"x"))])
def test_an_ops_layout_key_is_hashable_for_any_argument(args: tuple) -> None:
    x = torch.empty(2, 3, 4, device="meta")
    key = layout_key(torch.ops.aten.native_layer_norm.default, (x, *args), {"eps": 1e-5, "shape": [4]})
    assert hash(key) == hash(layout_key(torch.ops.aten.native_layer_norm.default, (x, *args),
                                        {"eps": 1e-5, "shape": [4]}))
    other = layout_key(torch.ops.aten.native_layer_norm.default, (x.transpose(0, 1), *args),
                       {"eps": 1e-5, "shape": [4]})
    assert key != other  # another layout of the same sizes' tensor is another key


def _layout(out: object) -> list:
    return [(tuple(t.shape), t.stride(), t.dtype) if isinstance(t, torch.Tensor) else t
            for t in (out if isinstance(out, tuple) else (out,))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_norm_outputs_made_without_their_kernels_equal_their_meta_kernels(dtype: torch.dtype,
                                                                          channels_last: bool) -> None:
    aten = torch.ops.aten
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.empty(2, 16, 3, 5, device="meta", dtype=dtype).contiguous(memory_format=fmt)
    w = torch.empty(16, device="meta")
    pooled = torch.empty(2, 16, 1, 1, device="meta", dtype=dtype).expand(2, 16, 3, 5)
    cases = [(aten.native_batch_norm.default, (x, w, w, w, w, training, 0.1, 1e-5)) for training in (True, False)]
    cases += [(aten.native_batch_norm_backward.default, (grad, x, w, w, w, w, w, True, 1e-5, mask))
              for grad in (torch.empty_like(x), pooled) for mask in ([True, True, True], [True, False, False])]
    scores, target = torch.empty(4, 10, device="meta", dtype=dtype), torch.zeros(4, dtype=torch.long, device="meta")
    cases += [(aten.nll_loss_forward.default, (scores, target, None, reduction, -100)) for reduction in (0, 1, 2)]
    made = 0
    for func, args in cases:
        out = norm_outputs(func, args, {})
        if out is not None:
            made += 1
            assert _layout(out) == _layout(func(*args)), (func, args)
    assert made >= 6  # the default layout's cases are made, not handed back to the kernels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_outputs_made_for_python_meta_kernels_equal_those_kernels(dtype: torch.dtype, channels_last: bool) -> None:
    from netprobe.counting.rules import FREE_META, RULES

    aten = torch.ops.aten
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.empty(2, 16, 3, 5, device="meta", dtype=dtype).contiguous(memory_format=fmt)
    cases = [(FREE_META[aten.native_dropout], aten.native_dropout.default, (x, 0.2, True), {})]
    cases += [(FREE_META[op.overloadpacket], op, (x,), kwargs) for op in (aten.empty_like.default,
                                                                           aten.zeros_like.default,
                                                                           aten.ones_like.default)
              for kwargs in ({}, {"dtype": torch.float32}, {"memory_format": torch.contiguous_format})]
    cases += [(RULES[aten.sum].meta, aten.sum.dim_IntList, (x, dims, keepdim), {})
              for dims in ([1], [2, 3], [-1], None) for keepdim in (False, True)]
    for made, func, args, kwargs in cases:
        assert _layout(made(func, args, kwargs)) == _layout(func(*args, **kwargs)), (func, args, kwargs)
