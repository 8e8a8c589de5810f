"""The `netprobe` command: the typer app, how user errors and signals end a command, `--version`."""

from __future__ import annotations

import functools
import signal
import sys
from typing import Annotated

import typer
from typer import _click
from typer.core import TyperGroup

from netprobe.errors import NetprobeError


class OneLineErrors(TyperGroup):
    """Usage errors (an unknown option, a choice that is not one) as one line on stderr, exit 2, like
    every other user error; an interrupt anywhere is exit 130 (143 for SIGTERM), without a stray line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        global _args
        _args = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            code = exc.exit_code
        except _click.exceptions.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "netprobe"
            top = exc.ctx is None or exc.ctx.parent is None  # an option given before any command
            command = next((a for a in _args if a in self.commands), None) if top else None
            after = f": options go after the command, e.g. netprobe {command} {_args[0]} ..." if command else ""
            say_error(f"{exc.format_message()}{after} (see {where} --help)")
            code = 2
        except _click.exceptions.ClickException as exc:
            say_error(exc.format_message())
            code = exc.exit_code
        except typer.Abort:
            code = 130
        code = code if isinstance(code, int) else 0
        if code == 130 and _terminated:
            code = 143
        if not standalone_mode:
            return code
        sys.exit(code)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  cls=OneLineErrors)
_terminated = False
_args: list[str] = []  # the command line of this invocation, as given


def invoked_args() -> list[str]:
    """The command line this invocation was given (`netprobe` and its arguments), for the record of a run."""
    return ["netprobe", *_args]


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `timeout`, schedulers and `kill` send): handled like Ctrl-C, exit code 143."""


def interrupt_code(exc: KeyboardInterrupt) -> int:
    return 143 if isinstance(exc, Terminated) or _terminated else 130


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line on stderr (the message as literal text, never markup) and end with `code`."""
    say_error(message)
    return typer.Exit(code)


def say_error(message: str) -> None:
    from rich.text import Text

    from netprobe.terminal import make_console

    make_console(stderr=True).print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)


SHORT_HELP_LIMIT = 50  # what `netprobe --help` shows of a command fits whole beside its name at 80 columns


def command(name: str, short_help: str, group: typer.Typer | None = None, needs_torch: bool = True):
    """Register a CLI command (on `app`, or on a command group) whose user errors become one line on
    stderr and exit code 2; `short_help` is its line in the group's `--help` (at most SHORT_HELP_LIMIT
    characters, never cut). `needs_torch=False`: a command that reads stored results, started without torch."""
    assert len(short_help) <= SHORT_HELP_LIMIT, short_help

    def register(fn):
        return (group or app).command(name, short_help=short_help)(one_line_errors(fn, needs_torch))

    return register


def one_line_errors(fn, needs_torch: bool = True):
    """`fn` with its user errors as one line on stderr and exit code 2 (torch imported first if it needs it)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if needs_torch:
            _load_torch()
        try:
            return fn(*args, **kwargs)
        except NetprobeError as exc:
            raise fail(misplaced_value(_args, str(exc)) or str(exc)) from None

    return wrapper


VALUE_OPTIONS = ("--imgsz", "--batch")  # options whose value is a size or a count, never a model


def misplaced_value(args: list[str], message: str) -> str | None:
    """For an 'unknown arch' that is really an option's value out of place, what happened instead:
    `--imgsz efficientnet_b0 224` (the option took the model), `--batch 8 16` (a second value)."""
    if not message.startswith("unknown arch "):
        return None
    for i, arg in enumerate(args[:-1]):
        option, _, value = arg.partition("=")
        if option not in VALUE_OPTIONS:
            continue
        value = value or args[i + 1]
        rest = args[i + 1:] if "=" in arg else args[i + 2:]
        nxt = rest[0] if rest else ""
        if value[:1].isalpha() and "x" not in value.lower().strip("0123456789"):
            return (f"{option} took {value!r} as its value, and it wants a number; give the model, then the "
                    f"option with its value: netprobe {args[0]} {value} {option} {nxt or 'N'}")
        if nxt.replace(",", "").isdigit() and f"{nxt!r}" in message:
            return (f"{option} takes one value and {nxt!r} was read as a model; for several give a comma list: "
                    f"{option} {value},{nxt}")
    return None


def _load_torch() -> None:
    """Import torch first, with the cyclic garbage collector off, and freeze what it made: its objects live
    as long as the process, and the full collections that walk them (during its import and later in the
    command's own) cost 0.1-0.2 s and free nothing."""
    import gc

    gc.disable()
    try:
        import torch  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()


def _version(value: bool) -> None:
    if value:
        from netprobe.version import NETPROBE_VERSION

        print(f"netprobe {NETPROBE_VERSION}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """What a CNN is made of, stage by stage, and how fast it trains and infers on your hardware."""


def _on_sigterm(signum: int, frame: object) -> None:
    global _terminated
    _terminated = True
    raise Terminated


def main() -> None:
    """The console script: SIGTERM becomes an interrupt that keeps finished results."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app()
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other tools do
        sys.stderr.close()
        sys.exit(141)
