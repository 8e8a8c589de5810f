"""What every runtime provides: export a module, load the export on a device, run it, say its version.

A runtime is one class with four jobs (export, load, run, version) and a few facts (the pip extra that
installs it, the devices it runs on, the file it writes). `RuntimeStep` turns any runtime's loaded
model into a timing `Step`, so that netprobe's steady-state loop times every runtime alike.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from netprobe.timing.clock import Clock
from netprobe.timing.step import INFER_PHASES

DEPLOY_EXTRA = "deploy"  # pip install 'netprobe[deploy]'


@dataclass
class Exported:
    """What `Runtime.export` wrote: the files of one model (the first is the one to load), how long it took."""

    files: list[Path]
    seconds: float
    how: str  # the exporter and its settings, in words
    module: nn.Module | None = None  # runtimes that need no file (eager torch) keep the module

    @property
    def size_mb(self) -> float:
        return sum(f.stat().st_size for f in self.files) / 2**20


class Runtime:
    """A runtime a model can be deployed to. Subclasses set the facts and implement the four jobs."""

    name = ""
    packages: tuple[str, ...] = ()  # import names it needs
    extra: str | None = DEPLOY_EXTRA  # the pip extra that installs them (None: always there)
    cuda = False  # runs on CUDA devices
    file_kind = ""  # what its export is, e.g. "ONNX"
    torch_memory = False  # allocates device memory through torch's allocator (which alone netprobe reads on CUDA)

    def missing(self) -> str | None:
        """Why the runtime cannot be used here (a package that does not import), or None."""
        for package in self.packages:
            try:
                importlib.import_module(package)
            except Exception as exc:  # not installed, or built against something else
                return f"{package} does not import ({type(exc).__name__})"
        return None

    def version(self) -> str:
        raise NotImplementedError

    def provider(self, device: str) -> str:
        """The execution provider or device it runs the model on, as the runtime names it."""
        return device

    def export(self, model: nn.Module, example: torch.Tensor, folder: Path, stem: str) -> Exported:
        raise NotImplementedError

    def load(self, exported: Exported, device: str, threads: int) -> object:
        raise NotImplementedError

    def prepare_input(self, x: torch.Tensor) -> object:
        """The input as the runtime takes it (converted once, outside the timed steps)."""
        return x

    def run(self, session: object, inputs: object) -> list:
        """Run the loaded model once; its outputs (tensors or arrays, nested as the runtime gives them)."""
        raise NotImplementedError


class TorchRuntime(Runtime):
    """A runtime of PyTorch's own (eager, TorchScript, torch.export): always there, on CPU and CUDA, run
    under inference mode; given by its name, what its file is, and how it saves and loads one."""

    extra = None
    cuda = True
    torch_memory = True

    def __init__(self, name: str, file_kind: str, how: str, suffix: str = "",
                 save: Callable[[nn.Module, torch.Tensor, Path], None] | None = None,
                 load: Callable[[Path, str], object] | None = None) -> None:
        self.name, self.file_kind, self.how, self.suffix = name, file_kind, how, suffix
        self._save, self._load = save, load

    def version(self) -> str:
        return torch.__version__

    def export(self, model: nn.Module, example: torch.Tensor, folder: Path, stem: str) -> Exported:
        if self._save is None:  # eager: the module itself
            return Exported([], 0.0, self.how, module=model)
        path = folder / f"{stem}{self.suffix}"
        return timed_export([path], self.how, lambda: self._save(model, example, path))

    def load(self, exported: Exported, device: str, threads: int) -> object:
        if self._load is None:
            return exported.module.eval()
        return self._load(exported.files[0], device)

    def run(self, session: object, inputs: object) -> list:
        with torch.inference_mode():
            return [session(inputs)]


class RuntimeStep:
    """A loaded model of any runtime as a timing Step: one inference per call, one phase."""

    phases = INFER_PHASES

    def __init__(self, runtime: Runtime, session: object, x: torch.Tensor) -> None:
        self.runtime, self.session, self.inputs = runtime, session, runtime.prepare_input(x)

    def __call__(self, clock: Clock) -> None:
        clock.mark()
        self.runtime.run(self.session, self.inputs)
        clock.mark()

    def release(self) -> None:
        self.session = self.inputs = None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Exporters print graphs, warnings and progress lines from Python and C++: keep them off the user's
    terminal and out of piped output (both file descriptors), and restore them even on error."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with warnings.catch_warnings(), open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
                contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def timed_export(files: list[Path], how: str, export) -> Exported:
    """Run `export()` (which writes `files`) quietly and time it."""
    t0 = time.perf_counter()
    with quiet():
        export()
    return Exported(files, time.perf_counter() - t0, how)
