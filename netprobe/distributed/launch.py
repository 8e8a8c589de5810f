"""Start the ranks of one data-parallel row on this machine, watch them, and stop every one of them.

Ranks are forked from a forkserver that imported torch once, so a row starts in tens of ms
instead of seconds per rank. They meet through one TCPStore the parent hosts (its port is
bound before any rank starts: no free-port race), and each reports to the parent over its own
pipe: a heartbeat per step, then rank 0's result, or the one line of the error that ended it.
The parent ends the row as soon as any rank fails, dies or stalls, names that rank, and stops
every rank it started before returning, whatever happened (Ctrl-C and SIGTERM included).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from typing import Any

import torch
import torch.distributed as dist

from netprobe.defaults import DIST_TIMEOUT_S
from netprobe.errors import DistError, InputError, one_line
from netprobe.timing import is_oom, usable_cores

FAILURE_GRACE_S = 1.0  # after a first failure, how long to listen for the rank that caused it
EXIT_GRACE_S = 10.0  # how long ranks may take to exit after rank 0 has reported
STOP_GRACE_S = 5.0  # between SIGTERM and SIGKILL when stopping ranks
COLLECTIVE_TIMEOUT_FACTOR = 2  # collectives time out after the parent's watchdog, which names the stalled ranks
PRELOAD = ["netprobe.distributed.measure"]  # imported once by the forkserver: torch, netprobe


@dataclass
class RankContext:
    """What a rank function receives: who it is, where it runs, its process group, and a heartbeat."""

    rank: int
    world_size: int
    device: str  # cpu | cuda:N
    group: Any = None  # the ProcessGroup the row runs on; None for a rank alone (no DDP)
    beat: Callable[[], None] = field(default=lambda: None, repr=False)

    def heartbeat(self) -> None:
        """Tell the parent this rank made progress (one step); its watchdog restarts."""
        self.beat()


@dataclass(frozen=True)
class _RankStart:
    fn: Callable[[Any, RankContext], Any]
    task: Any
    rank: int
    world_size: int
    device: str
    cores: tuple[int, ...] | None
    threads: int
    store_port: int | None  # None: a rank alone, no process group
    prefix: str
    backend: str
    timeout_s: float


@dataclass
class _Failure:
    rank: int
    kind: str  # error | oom | died
    line: str
    at: float  # time.monotonic() in the rank: system-wide on Linux, so ranks' failures can be ordered
    seen: float = field(default_factory=time.monotonic)  # when the parent learnt of it

    def error(self) -> DistError:
        verb = "died" if self.kind == "died" else "failed"
        return DistError(f"rank {self.rank} {verb}: {self.line}", self.rank, self.kind)


class Launcher:
    """Runs a function on every rank of a fresh set of processes, one set per `run` call.

    Use as a context manager: it hosts the rendezvous store, and while it is open SIGTERM
    becomes KeyboardInterrupt so that the ranks are stopped rather than orphaned.
    """

    def __init__(self, device: str, nproc: int, threads_per_rank: int, backend: str, timeout_s: float = DIST_TIMEOUT_S,
                 port: int | None = None, on_step: Callable[[], None] | None = None) -> None:
        self.device, self.nproc, self.threads, self.backend = device, nproc, threads_per_rank, backend
        self.timeout_s, self.port, self.on_step = timeout_s, port, on_step
        self.store: dist.TCPStore | None = None
        self.pids: list[int] = []  # every rank process this launcher started, for the caller to check
        self._previous_sigterm: Any = None

    def __enter__(self) -> Launcher:
        try:
            self.store = dist.TCPStore("127.0.0.1", self.port or 0, None, True, timedelta(seconds=self.timeout_s),
                                       wait_for_workers=False)
        except (RuntimeError, OSError) as exc:
            where = f"port {self.port}" if self.port else "any port"
            raise InputError(f"cannot listen on {where} for the ranks to meet ({one_line(exc)}); give a free port, "
                             f"or leave --port out to pick one") from None
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        self.store = None

    def run(self, fn: Callable[[Any, RankContext], Any], task: Any, world_size: int, group: bool = True) -> Any:
        """Run `fn(task, ctx)` on `world_size` new ranks (with a process group unless `group=False`).

        Returns what rank 0's `fn` returned. A rank that raises, dies or stalls raises `DistError`
        naming it; by then every rank of the set has been stopped.
        """
        if self.store is None:
            raise RuntimeError("Launcher.run called outside its `with` block")
        context = _context()
        prefix = f"{uuid.uuid4().hex}/"  # a fresh namespace: the store outlives each set of ranks
        procs, readers, lifelines = [], [], []
        try:
            for rank in range(world_size):
                start = _RankStart(fn, task, rank, world_size, self._device_of(rank), self._cores_of(rank),
                                   self.threads, self.store.port if group else None, prefix, self.backend,
                                   self.timeout_s)
                proc, reader, lifeline = _start(context, start)
                procs.append(proc)
                readers.append(reader)
                lifelines.append(lifeline)
                self.pids.append(proc.pid)
            return _Watch(procs, readers, self.timeout_s, self.on_step).result()
        finally:
            _stop(procs)
            for conn in readers + lifelines:
                conn.close()

    def _device_of(self, rank: int) -> str:
        return f"cuda:{rank}" if self.device == "cuda" else "cpu"

    def _cores_of(self, rank: int) -> tuple[int, ...] | None:
        if self.device == "cuda" or not hasattr(os, "sched_setaffinity"):
            return None  # on CUDA, leave CPU placement to the OS: pinning could put a rank far from its GPU
        cores = usable_cores()
        return tuple(cores[rank * self.threads:(rank + 1) * self.threads])


def _start(context: Any, start: _RankStart) -> tuple[Any, Connection, Connection]:
    """Start one rank; returns it, the pipe it reports on, and the lifeline it watches."""
    reader, writer = context.Pipe(duplex=False)
    lifeline, held = context.Pipe(duplex=False)
    proc = context.Process(target=_rank_main, args=(start, writer, lifeline), name=f"netprobe-rank{start.rank}",
                           daemon=True)
    proc.start()
    writer.close()  # the rank holds the only writer: its exit ends the pipe
    lifeline.close()
    return proc, reader, held  # `held` is never written: when this process dies, the rank reads EOF and exits


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # takes effect when the server first starts
    return context


class _Watch:
    """The parent's view of one set of ranks: heartbeats, rank 0's result, the first failure."""

    def __init__(self, procs: list, readers: list[Connection], timeout_s: float,
                 on_step: Callable[[], None] | None) -> None:
        self.procs, self.timeout_s, self.on_step = procs, timeout_s, on_step
        self.readers = {reader: rank for rank, reader in enumerate(readers)}
        self.alive = {proc.sentinel: rank for rank, proc in enumerate(procs)}
        self.steps = [0] * len(procs)
        self.failures: list[_Failure] = []
        self.exited: dict[int, int] = {}
        self.payload: Any = None
        self.reported = False
        self.reported_at = self.progress_at = time.monotonic()

    def result(self) -> Any:
        """Rank 0's payload once every rank has exited; `DistError` for the rank that ended the row."""
        while self.readers or self.alive:
            ready = wait([*self.readers, *self.alive], timeout=max(0.0, self._deadline() - time.monotonic()))
            if not ready:
                break
            for item in ready:
                if item in self.readers:
                    self._receive(item)
                elif item in self.alive:  # (a reader that _exited drained to its end is gone already)
                    self._exited(item)
        self._drain()
        if self.failures:
            raise _root_cause(self.failures).error()
        if not self.reported:
            raise self._stalled()
        return self.payload

    def _deadline(self) -> float:
        if self.failures:  # listen a little longer: the rank that caused it may speak after its peers
            return min(f.seen for f in self.failures) + FAILURE_GRACE_S
        if self.reported:
            return self.reported_at + EXIT_GRACE_S
        return self.progress_at + self.timeout_s

    def _receive(self, reader: Connection) -> None:
        rank = self.readers[reader]
        try:
            message = reader.recv()
        except (EOFError, OSError):
            del self.readers[reader]
            return
        kind = message[0]
        if kind == "step":
            self.steps[rank] += 1
            self.progress_at = time.monotonic()
            if rank == 0 and self.on_step:
                self.on_step()
        elif kind == "result":
            if rank == 0:
                self.payload, self.reported, self.reported_at = message[1], True, time.monotonic()
        else:
            self.failures.append(_Failure(rank, kind, message[2], message[1]))

    def _exited(self, sentinel: int) -> None:
        rank = self.alive.pop(sentinel)
        proc = self.procs[rank]
        proc.join(0)
        self.exited[rank] = proc.exitcode
        if proc.exitcode:
            self._drain()  # a message it sent before dying explains the exit better than the exit code
            if not any(f.rank == rank for f in self.failures):
                self.failures.append(_Failure(rank, "died", _exit_reason(proc.exitcode), time.monotonic()))

    def _drain(self) -> None:
        for reader in list(self.readers):
            while reader in self.readers and reader.poll(0):
                self._receive(reader)

    def _stalled(self) -> DistError:
        running = [r for r in range(len(self.procs)) if r not in self.exited]
        if not running:
            return DistError("rank 0 ended without reporting a result", 0, "error")
        fewest = min(self.steps[r] for r in running)
        behind = [r for r in running if self.steps[r] == fewest]
        who = f"rank {behind[0]}" if len(behind) == 1 else "ranks " + ", ".join(map(str, behind))
        steps = f"{fewest} step" + ("" if fewest == 1 else "s")
        return DistError(f"{who} made no progress for {self.timeout_s:g} s (after {steps}); stopped all ranks",
                         behind[0], "stalled")


def _root_cause(failures: list[_Failure]) -> _Failure:
    """A rank killed from outside comes first (its peers' errors follow from it), then the earliest error."""
    died = [f for f in failures if f.kind == "died"]
    return min(died, key=lambda f: f.rank) if died else min(failures, key=lambda f: f.at)


def _exit_reason(exitcode: int) -> str:
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-exitcode).name}"
        return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _stop(procs: list) -> None:
    """SIGTERM every rank still running, SIGKILL what is left after a grace, and reap them all."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join(STOP_GRACE_S)


# ---- inside a rank -----------------------------------------------------------------------------

def _rank_main(start: _RankStart, conn: Connection, lifeline: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole terminal group; the parent stops us
    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True).start()
    try:
        _place(start)
        group = _join_group(start) if start.store_port is not None else None
        ctx = RankContext(start.rank, start.world_size, start.device, group, lambda: conn.send(("step",)))
        payload = start.fn(start.task, ctx)
        conn.send(("result", payload if start.rank == 0 else None))
        if group is not None:
            dist.destroy_process_group()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(("oom" if is_oom(exc) else "error", time.monotonic(), one_line(exc)))
        os._exit(1)  # peers may still hold this rank in a collective; do not wait on them at shutdown


def _exit_with_parent(lifeline: Connection) -> None:
    # The parent never writes: recv returns only with EOF, when the parent is gone (even by SIGKILL).
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv()
    os._exit(1)


def _place(start: _RankStart) -> None:
    if start.cores:
        os.sched_setaffinity(0, start.cores)
    torch.set_num_threads(start.threads)
    if start.device.startswith("cuda"):
        torch.cuda.set_device(torch.device(start.device))
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # all ranks are on this machine


def _join_group(start: _RankStart) -> Any:
    timeout = timedelta(seconds=start.timeout_s * COLLECTIVE_TIMEOUT_FACTOR)
    store = dist.TCPStore("127.0.0.1", start.store_port, is_master=False, timeout=timeout)
    dist.init_process_group(start.backend, store=dist.PrefixStore(start.prefix, store), rank=start.rank,
                            world_size=start.world_size, timeout=timeout)
    return dist.group.WORLD
