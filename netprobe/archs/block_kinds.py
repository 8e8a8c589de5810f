"""Block kinds: everything the rest of netprobe asks of one kind of block, in one entry.

A stage table's row names its kind by a token (`mb`, `fmb`, `basic`, `bottleneck`). The kind says
how the row reads and prints as a block string (its fields and their defaults), how the papers
name it, its letter in a layout string, its family on a roofline (and whether its kxk conv is
depthwise), what its expansion ratio multiplies, whether it has a fused twin, whether it takes
squeeze-excitation, and which class of `netprobe.archs.blocks` builds it. A new block kind is one
entry here and one class there. Nothing here knows torch.
"""

from __future__ import annotations

from dataclasses import dataclass

# The fields of a block string, in canonical order, and what each letter means.
FIELD_NAMES = {"r": "REPEATS", "k": "KERNEL", "s": "STRIDE", "e": "EXPAND", "c": "CHANNELS", "se": "RATIO",
               "act": "ACT"}


@dataclass(frozen=True)
class BlockKind:
    """One kind of block (see the module's docstring)."""

    op: str  # its token in a block string
    name: str  # how the papers name it
    letter: str  # its letter in a layout string
    family: str  # its family on a roofline
    depthwise: bool  # its kxk conv is depthwise (one filter per channel)
    builder: str  # the class in netprobe.archs.blocks that builds one block of this kind
    fields: tuple[str, ...]  # the block-string fields it takes, in canonical order ("c" is required)
    expand_default: float = 1.0  # the expansion ratio when a block string gives none
    expand_of: str = "input"  # what the ratio multiplies: "input" channels (MBConv) or "output" (bottleneck)
    numbered: bool = True  # the papers write the ratio into the name: MBConv6
    fused: bool = False  # one regular conv where its twin has a depthwise one
    twin: str | None = None  # the kind it becomes when fused or unfused; None: no such twin
    example: str = ""  # a block string of this kind

    @property
    def takes_se(self) -> bool:
        return "se" in self.fields

    @property
    def grammar(self) -> str:
        """How a block string of this kind reads, its defaults and an example, for error messages."""
        parts = [self.op]
        for f in self.fields:
            parts.append("[_seRATIO]" if f == "se" else "[_ACT]" if f == "act" else f"_{f}{FIELD_NAMES[f]}")
        defaults = {"r": "r1", "k": "k3", "s": "s1", "e": f"e{num_text(self.expand_default)}"}
        given = [f for f in self.fields if f in defaults]
        return (f"{''.join(parts)} ({', '.join(given)} default to {', '.join(defaults[f] for f in given)}), "
                f"e.g. {self.example}")

    def paper_name(self, expand: float, kernel: int, se: float) -> str:
        """The operator as the papers write it: 'Fused-MBConv4, k3x3', 'MBConv6, k5x5, SE0.25',
        'BasicBlock, k3x3', 'Bottleneck, k3x3, e0.25'."""
        if self.numbered:
            text = f"{self.name}{num_text(expand)}, k{kernel}x{kernel}"
        else:
            text = f"{self.name}, k{kernel}x{kernel}" + (f", e{num_text(expand)}" if "e" in self.fields else "")
        return text + (f", SE{num_text(se)}" if se else "")

    def expanded(self, in_ch: int, out: int, expand: float) -> int:
        """The channels inside the block: the input's (or for a bottleneck, the output's) times the ratio."""
        if self.expand_of == "output":
            return make_divisible(out * expand)
        return in_ch if expand == 1 else make_divisible(in_ch * expand)


_MB_FIELDS = ("r", "k", "s", "e", "c", "se", "act")
BLOCK_KINDS: dict[str, BlockKind] = {k.op: k for k in (
    BlockKind("mb", "MBConv", "M", "MBConv", True, "MBConv", _MB_FIELDS, twin="fmb",
              example="mb_r2_k3_s2_e6_c24_se0.25"),
    BlockKind("fmb", "Fused-MBConv", "F", "Fused-MBConv", False, "FusedMBConv", _MB_FIELDS, fused=True, twin="mb",
              example="fmb_r4_k3_s2_e4_c48"),
    BlockKind("basic", "BasicBlock", "R", "BasicBlock", False, "BasicBlock", ("r", "k", "s", "c", "act"),
              numbered=False, example="basic_r2_k3_s2_c128"),
    BlockKind("bottleneck", "Bottleneck", "B", "Bottleneck", False, "Bottleneck", ("r", "k", "s", "e", "c", "act"),
              expand_default=0.25, expand_of="output", numbered=False, example="bottleneck_r4_k3_s2_e0.25_c512"),
)}
OPS = tuple(BLOCK_KINDS)
MIXED_LETTER = "x"  # a stage whose rows are of different kinds


def kind_of(op: str) -> BlockKind:
    return BLOCK_KINDS[op]


def layout_legend() -> str:
    """What the letters of a layout string mean: 'M MBConv, F Fused-MBConv, ...'."""
    return ", ".join(f"{k.letter} {k.name}" for k in BLOCK_KINDS.values())


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to the nearest multiple of `divisor`, never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def num_text(x: float) -> str:
    """Shortest text that reads back as the same number: 4.0 -> '4', 0.25 -> '0.25'."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))
