"""Targets: whatever the user names, resolved into the one thing every command measures.

    efficientnet_b4:fused=1-3                  a zoo spec (stage table -> Net)
    module:mypkg.models:build_net(width=0.5)   a Python object path: a factory, or an nn.Module instance
    path/to/file.py:build_net                  the same, imported from a file
    timm:efficientnetv2_rw_s                   a timm model (pretrained=False), when timm is importable
    an nn.Module passed in Python              never changed: counted on a meta copy, timed on a copy

A target knows how to make a fresh module on a device (`meta` for counting), its own input size
when it has one, and what its stages are. Keyword arguments in object paths are literals only,
parsed with `ast.literal_eval`, never evaluated.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from netprobe.building import BuildTimeout, building
from netprobe.errors import InputError, SpecError, quote
from netprobe.sizes import Size, check_batch
from netprobe.spec import Spec, parse_spec

if TYPE_CHECKING:
    from netprobe.detect.spec import DetectorSpec

MODULE_PREFIX = "module:"
TIMM_PREFIX = "timm:"
KINDS = ("zoo", "detector", "module", "file", "timm", "object")


@dataclass
class Target:
    """A model to count and time: how to make it, its input, and how its rows are found. A netprobe
    backbone is a `ZooTarget` (it knows its spec), a detector a `DetectorTarget` (it knows its layout);
    anything else (kind module, file, timm, object) is a plain Target."""

    label: str  # how it is shown: the spec as given, the object path, or the class name
    kind: str  # one of KINDS
    make: Callable[[str | torch.device], nn.Module]  # a fresh module on that device
    imgsz: Size | None = None  # the target's own input size; None when it does not say
    in_chans: int = 3
    min_side: int = 1  # the smallest input side that leaves every stage a pixel
    canonical: str | None = None  # a spec that parses back to the same model (zoo and detectors)
    meta_ok: bool = True  # False: counting has to run on a real (CPU) copy
    user_module: nn.Module | None = None  # the object the user passed in, never changed

    def meta_model(self) -> nn.Module:
        """The module to count: built on `meta` (nothing allocated), or a real CPU copy when it cannot be."""
        if self.user_module is not None:
            try:
                return meta_copy(self.user_module)
            except Exception:  # an exotic module that cannot be copied to meta: count a real copy
                return copy.deepcopy(self.user_module).cpu()
        return self.make("meta" if self.meta_ok else "cpu")

    def real_model(self) -> nn.Module:
        """A real CPU module, for a forward the meta device cannot run (`.item()`, data-dependent shapes)."""
        return self.make("cpu") if self.user_module is None else copy.deepcopy(self.user_module).cpu()

    def input_size(self, imgsz: Size | None) -> Size:
        """The size asked for (already parsed: netprobe.sizes), or the target's own; a target that does not
        say needs one."""
        if imgsz is None:
            if self.imgsz is None:
                raise InputError(f"{self.label} does not say its input size; give one with --imgsz "
                                 "(N or HxW, e.g. --imgsz 224), or imgsz=... in Python")
            return self.imgsz
        return imgsz

    def check_input(self, size: Size, batch: int) -> None:
        """Refuse, in one line, an input that leaves a stage without pixels or a batch out of range."""
        if min(size) < max(1, self.min_side):
            shown = "x".join(str(s) for s in size)
            least = max(1, self.min_side)
            why = f"{self.label} downsamples by {least}, so " if least > 1 else ""
            raise InputError(f"image size {shown} is too small: {why}each side must be at least {least}")
        check_batch(batch)


@dataclass(kw_only=True)
class ZooTarget(Target):
    """A netprobe backbone: its parsed spec (stage table, classes) and stages that run in sequence."""

    spec: Spec
    kind: str = "zoo"


@dataclass(kw_only=True)
class DetectorTarget(Target):
    """A detector: its resolved layout (rows, scale, backbone), which its summary walks row by row."""

    detector: DetectorSpec
    kind: str = "detector"

    def check_input(self, size: Size, batch: int) -> None:
        from netprobe.detect import check_imgsz

        check_imgsz(self.detector, size)
        check_batch(batch)


# ---- resolving ----------------------------------------------------------------------------------

ACCEPTED = ("a spec string (e.g. 'efficientnet_b4:fused=1-3', 'module:pkg.mod:factory', 'path/to/file.py:factory', "
            "'timm:NAME') or an nn.Module")


def resolve(model: object, in_chans: int | None = None, scale: str | None = None,
            modules: str | None = None) -> Target:
    """Turn what the user gave into a `Target`; anything unusable raises a one-line `NetprobeError`.

    `scale` and `modules` are a detector YAML file's (`--scale`, `--modules file.py`).
    """
    if isinstance(model, Target):
        return model
    text = model.strip() if isinstance(model, str) else None
    if text:
        from netprobe.detect.builtin import is_detector

        if is_detector(text):
            return _detector_target(text, in_chans, scale, modules)
    if scale is not None or modules is not None:
        raise InputError("--scale and --modules apply to detectors (a YAML file or a built-in such as yolov8n) only")
    if isinstance(model, nn.Module):
        return _object_target(model, in_chans)
    if isinstance(model, Spec):
        return _zoo_target(model)
    if not isinstance(model, str):
        raise SpecError(f"a model was given as {type(model).__name__} {quote(repr(model), 40)}; give {ACCEPTED}")
    text = model.strip()
    if not text:
        raise SpecError(f"empty spec: give {ACCEPTED}")
    if text.startswith(MODULE_PREFIX):
        return _path_target(text, text[len(MODULE_PREFIX):], "module", in_chans)
    if text.startswith(TIMM_PREFIX):
        return _timm_target(text, in_chans)
    if _looks_like_file(text):
        return _path_target(text, text, "file", in_chans)
    try:
        spec = parse_spec(text)
    except SpecError:
        _refuse_a_path(text)  # `adir:factory`, `model.txt:factory`: say what the path is, not "unknown arch"
        raise
    return _zoo_target(spec)


def _refuse_a_path(text: str) -> None:
    """Refuse, in one line, a spec whose part before ':' is an existing folder or a file other than .py."""
    head = text.split("(", 1)[0]
    location, _, attr = head.rpartition(":") if ":" in head else (head, "", "factory")
    if not location.strip():
        return
    path = Path(location.strip()).expanduser()
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError:  # a name too long to be a path
        return
    name = attr.strip() or "factory"
    if is_dir:
        folder = location.strip().rstrip("/")
        raise SpecError(f"{quote(location.strip(), 80)} is a folder, not a model; give a .py file in it "
                        f"({folder}/model.py:{name}) or a module path (module:package.module:{name})")
    if is_file:
        raise SpecError(f"{quote(location.strip(), 80)} is not a .py file; give path/to/file.py:{name}, "
                        "or a model .yaml file")


def _detector_target(text: str, in_chans: int | None, scale: str | None, modules: str | None) -> Target:
    from netprobe.detect import build_detector
    from netprobe.detect import resolve as resolve_detector

    if in_chans not in (None, 3):
        raise InputError(f"--in-chans {in_chans}: detectors take 3 input channels")
    spec = resolve_detector(text, scale, modules)
    return DetectorTarget(label=text, make=lambda device: build_detector(spec, device), imgsz=(spec.imgsz, spec.imgsz),
                          min_side=spec.max_stride, canonical=spec.canonical, detector=spec)


def _zoo_target(spec: Spec) -> Target:
    from netprobe.api import build

    table = spec.table
    return ZooTarget(label=str(spec), make=lambda device: build(spec, device), imgsz=(table.imgsz, table.imgsz),
                     min_side=table.min_imgsz(), canonical=spec.canonical, spec=spec)


def _object_target(module: nn.Module, in_chans: int | None) -> Target:
    def make(device: str | torch.device) -> nn.Module:
        return meta_copy(module) if str(device) == "meta" else copy.deepcopy(module).to(device)

    imgsz, chans = _declared_input(module)
    return Target(label=type(module).__name__, kind="object", make=make, imgsz=imgsz,
                  in_chans=in_chans or chans or 3, user_module=module)


@contextlib.contextmanager
def module_to_time(target: Target, device: str, copy: bool = True) -> Iterator[nn.Module]:
    """The module to time: a fresh one (or a copy of the user's), or with `copy=False` the user's own,
    which gets its parameters, buffers, gradients and training flag back afterwards."""
    from netprobe.tensors import model_device

    if copy or target.user_module is None:
        yield target.make(device)
        return
    module = target.user_module
    if model_device(module).type != device:
        raise InputError(f"copy=False times your module where it is ({model_device(module)}); "
                         f"move it to {device} first, or let netprobe copy it")
    saved = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict(keep_vars=True).items()}
    # Clones: a backward adds into an existing .grad in place.
    grads = {name: None if p.grad is None else p.grad.detach().clone() for name, p in module.named_parameters()}
    training = module.training
    try:
        yield module
    finally:
        with torch.no_grad():
            for k, v in module.state_dict(keep_vars=True).items():
                v.copy_(saved[k])
        for name, p in module.named_parameters():
            p.grad = grads[name]
        module.train(training)


def meta_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` whose parameters and buffers live on `meta`: same structure, shared
    parameters stay shared, nothing of the original is copied into memory or changed."""
    memo: dict[int, object] = {}
    for p in module.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in module.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(module, memo)


def _declared_input(module: object) -> tuple[tuple[int, int] | None, int | None]:
    """The input a module says it takes (timm's `pretrained_cfg` / `default_cfg`): ((H, W), C)."""
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(module, attr, None)
        size = cfg.get("input_size") if isinstance(cfg, dict) else None
        if isinstance(size, tuple | list) and len(size) == 3 and all(isinstance(v, int) for v in size):
            return (size[1], size[2]), size[0]
    return None, None


# ---- object paths: module:pkg.mod:attr(kw=...) and path/to/file.py:attr(kw=...) -----------------

def _looks_like_file(text: str) -> bool:
    head = text.split("(", 1)[0]
    path = head.rsplit(":", 1)[0] if ":" in head else head
    return path.endswith(".py")


def split_call(text: str, where: str) -> tuple[str, list, dict]:
    """'build_net(width=0.5, classes=10)' -> ('build_net', [], {'width': 0.5, 'classes': 10}): literals only."""
    name, paren, rest = text.partition("(")
    if not paren:
        return name.strip(), [], {}
    if not rest.rstrip().endswith(")"):
        raise SpecError(f"{where}: the arguments in {quote(text)} do not end with ')'; "
                        "write e.g. build_net(width=0.5,classes=10)")
    try:
        call = ast.parse(f"f({rest.rstrip()[:-1]})", mode="eval").body
        args = [ast.literal_eval(a) for a in call.args]  # type: ignore[attr-defined]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}  # type: ignore[attr-defined]
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as exc:
        raise SpecError(f"{where}: arguments {quote('(' + rest)} are not literals ({type(exc).__name__}); only "
                        "numbers, strings, booleans, None, tuples, lists and dicts are taken") from None
    if any(k is None for k in kwargs):
        raise SpecError(f"{where}: **kwargs are not taken; write each keyword, e.g. width=0.5")
    return name.strip(), args, kwargs


def _path_target(label: str, text: str, kind: str, in_chans: int | None) -> Target:
    """`pkg.mod:attr(...)` (kind 'module') or `path/file.py:attr(...)` (kind 'file')."""
    where = quote(label, 80)
    head, paren, rest = text.partition("(")
    location, colon, attr = head.rpartition(":")
    if not colon or not location.strip() or not attr.strip():
        form = "module:package.module:factory" if kind == "module" else "path/to/file.py:factory"
        raise SpecError(f"{where}: give {form}, optionally with literal keyword arguments, e.g. {form}(width=0.5)")
    name, args, kwargs = split_call(attr + paren + rest, where)
    namespace = _import_file(location.strip(), where) if kind == "file" else _import_module(location.strip(), where)
    if not hasattr(namespace, name):
        public = [n for n in dir(namespace) if not n.startswith("_")]
        from netprobe.errors import closest

        close = closest(name, public)
        hint = f"did you mean {' or '.join(close)}?" if close else "it has: " + ", ".join(public[:12])
        raise SpecError(f"{where}: {location.strip()} has no attribute {quote(name)}; {hint}")
    obj = getattr(namespace, name)
    if isinstance(obj, nn.Module):
        if args or kwargs:
            raise SpecError(f"{where}: {name} is an nn.Module instance, not a factory; drop the arguments")
        target = _object_target(obj, in_chans)
        target.label, target.kind = label, kind
        return target
    if not callable(obj):
        raise SpecError(f"{where}: {name} is a {type(obj).__name__}, neither an nn.Module nor a function "
                        "that returns one")
    return _factory_target(label, kind, obj, args, kwargs, in_chans)


def _factory_target(label: str, kind: str, factory: Callable, args: list, kwargs: dict,
                    in_chans: int | None) -> Target:
    where = quote(label, 80)

    def call(device: str | torch.device) -> nn.Module:
        with building(label):  # outside the try: its BuildTimeout is not the factory's error
            try:
                with torch.device(device):
                    made = factory(*args, **kwargs)
            except Exception as exc:
                raise _cause(where, "raised", exc) from None
        if not isinstance(made, nn.Module):
            raise SpecError(f"{where}: the factory returned {type(made).__name__}, not an nn.Module")
        return made

    # Build once on meta now: a bad factory is refused before any work, and the module tells its input.
    meta_ok = True
    try:
        probe = call("meta")
    except SpecError:
        probe, meta_ok = call("cpu"), False  # raises the factory's own error if it fails on CPU as well
    imgsz, chans = _declared_input(probe)
    return Target(label=label, kind=kind, make=call, imgsz=imgsz, in_chans=in_chans or chans or 3, meta_ok=meta_ok)


def _cause(where: str, verb: str, exc: BaseException) -> SpecError:
    """One line naming the target and the cause: the exception's type and the first line of its message."""
    first = next(iter(str(exc).strip().splitlines()), "")
    return SpecError(f"{where}: {verb} {type(exc).__name__}" + (f": {quote(first, 160)[1:-1]}" if first else ""))


def _import_module(name: str, where: str) -> object:
    with building(name):  # outside the try: its BuildTimeout is not the import's error
        try:
            try:
                return importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if not _search_current_folder(name, exc):
                    raise
                return importlib.import_module(name)
        except Exception as exc:
            raise _cause(where, f"importing {name} failed with", exc) from None


def _search_current_folder(name: str, exc: ModuleNotFoundError) -> bool:
    """A package in the current folder, as `python -m` finds it: the folder is searched after the
    installed packages (so a local file never shadows one). False: it is not there either."""
    top = name.partition(".")[0]
    cwd = os.getcwd()
    if exc.name != top or cwd in sys.path or "" in sys.path:
        return False
    if not (Path(cwd, top).is_dir() or Path(cwd, f"{top}.py").is_file()):
        return False
    sys.path.append(cwd)
    return True


_FILE_MODULES: dict[Path, object] = {}


def _import_file(path_text: str, where: str) -> object:
    path = Path(path_text).expanduser()
    if path.is_dir():
        raise SpecError(f"{where}: {quote(path_text)} is a folder, not a file; give the path of a .py file")
    if not path.is_file():
        raise SpecError(f"{where}: no such file {quote(path_text)}; give the path of a .py file")
    path = path.resolve()
    if path in _FILE_MODULES:
        return _FILE_MODULES[path]
    name = f"netprobe_user_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))  # so the file can import its neighbours
    try:
        with building(path_text):
            spec.loader.exec_module(module)  # type: ignore[union-attr]
    except BuildTimeout:
        sys.modules.pop(name, None)
        raise
    except Exception as exc:
        sys.modules.pop(name, None)
        raise _cause(where, f"importing {path.name} failed with", exc) from None
    finally:
        sys.path.remove(str(path.parent))
    _FILE_MODULES[path] = module
    return module


# ---- timm ---------------------------------------------------------------------------------------

def _timm_target(label: str, in_chans: int | None) -> Target:
    where = quote(label, 80)
    try:
        import timm
    except Exception as exc:  # not installed, or installed against another torch
        reason = "is not installed" if isinstance(exc, ModuleNotFoundError) else \
            f"does not import here ({type(exc).__name__})"
        raise SpecError(f"{where}: timm {reason}; pip install timm (it needs a matching torchvision), "
                        "or give a netprobe spec or a module:... path") from None
    name, args, kwargs = split_call(label[len(TIMM_PREFIX):], where)
    if args:
        raise SpecError(f"{where}: give timm options as keywords, e.g. timm:{name}(features_only=True)")
    if not name or name not in timm.list_models():
        close = timm.list_models(f"*{name}*")[:5] if name else []
        raise SpecError(f"{where}: timm has no model {quote(name)}" + (f"; similar: {', '.join(close)}" if close else
                                                                       "; timm.list_models() lists them"))
    kwargs = {**kwargs, "pretrained": False}  # never download weights
    if in_chans:
        kwargs.setdefault("in_chans", in_chans)
    target = _factory_target(label, "timm", timm.create_model, [name], kwargs, in_chans)
    return target

