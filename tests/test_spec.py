"""Spec strings: every table prints as a canonical spec that parses back to it; bad specs fail in one line."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import netprobe
from netprobe import BlockSpec, NetSpec, SpecError, parse_spec
from netprobe.archs import ARCHS
from netprobe.archs.block_kinds import BLOCK_KINDS, OPS
from netprobe.archs.table import ACTS, SE_STYLES
from netprobe.spec import format_block, format_table, parse_block


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def spec_error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    message = str(info.value)
    assert "\n" not in message
    assert len(message.splitlines()) == 1
    return message


# ---- round trips ------------------------------------------------------------------------------

OPTION_COMBOS = [
    "",
    "fused=1-3",
    "fused=2,4",  # a comma inside a value
    "fused=2,4,width=0.5",  # ... followed by another key
    "width=0.5,depth=0.5",
    "se=0",
    "act=relu",
    "classes=0",
    "drop_path=0.1",
    "fused_kernel=3",
    "fused=1-3,fused_kernel=3,fused_se=keep",
    "fused=all",
    "fused=none",
]


def takes(arch: str, options: str) -> bool:
    """ResNet blocks have no fused form and no SE: those options are refused (tested apart)."""
    return ARCHS[arch].family != "ResNet" or not ("fused" in options or "se=" in options)


ALL_SPECS = [f"{a}:{o}" if o else a for a in ARCHS for o in OPTION_COMBOS if takes(a, o)]


@pytest.mark.parametrize("text", ALL_SPECS)
def test_canonical_and_str_parse_back_to_the_same_table(text: str) -> None:
    spec = parse_spec(text)
    again = parse_spec(spec.canonical)
    assert again.arch == "custom"
    assert again.table == spec.table
    assert again.canonical == spec.canonical
    assert parse_spec(str(spec)).table == spec.table
    assert str(parse_spec(str(spec))) == str(spec)


# Building costs ~50 ms per model on meta: every arch with its richest option set, every option on two archs.
BUILD_SPECS = sorted({
    *(f"{a}:fused=2,4,width=0.5" if takes(a, "fused") else f"{a}:width=0.5,depth=0.5" for a in ARCHS),
    *ARCHS,
    *(s for s in ALL_SPECS if s.split(":")[0] in ("efficientnet_b0", "mobilenetv3_small")),
})


@pytest.mark.parametrize("text", BUILD_SPECS)
def test_canonical_builds_the_same_model(text: str) -> None:
    spec = parse_spec(text)
    model = netprobe.build(spec, device="meta")
    again = netprobe.build(spec.canonical, device="meta")
    assert n_params(again) == n_params(model)
    assert str(again) == str(model)


def test_options_change_the_table() -> None:
    # The round trips above would pass trivially if options were ignored.
    tables = [parse_spec(f"efficientnet_b0:{o}" if o else "efficientnet_b0").table for o in OPTION_COMBOS]
    # B0 has no fused stage, so fused=none and fused_kernel=3 leave it as it is; every other option changes it.
    assert len({format_table(t) for t in tables}) == len(OPTION_COMBOS) - 2
    b0 = parse_spec("efficientnet_b0").table
    assert parse_spec("efficientnet_b0:fused=none").table == b0
    assert parse_spec("efficientnet_b0:fused=2,4").table.layout() == "MFMFMMM"
    assert parse_spec("efficientnet_b0:se=0").table.stages[0][0].se == 0
    assert parse_spec("efficientnet_b0:act=relu").table.act == "relu"
    assert parse_spec("mobilenetv3_large:act=relu").table.stages[3][0].act is None
    half = parse_spec("efficientnet_b0:width=0.5,depth=0.5").table
    assert (half.stem, half.head, half.num_blocks) == (16, 640, 10)


def test_efficientnetv2_s_canonical_form() -> None:
    assert parse_spec("efficientnetv2_s").canonical == (
        "custom:stem=24,stages=fmb_r2_k3_s1_e1_c24/fmb_r4_k3_s2_e4_c48/fmb_r4_k3_s2_e4_c64/"
        "mb_r6_k3_s2_e4_c128_se0.25/mb_r9_k3_s1_e6_c160_se0.25/mb_r15_k3_s2_e6_c256_se0.25,"
        "head=1280,head_fc=0,act=silu,se_style=effnet,classes=1000,drop_path=0.2,dropout=0.2,imgsz=384"
    )


@pytest.mark.parametrize(("text", "normal"), [
    ("efficientnet_b4:fused=1-3", "efficientnet_b4:fused=1-3"),
    ("  efficientnet_b4 : fused = 1-3 ", "efficientnet_b4:fused=1-3"),
    ("efficientnet_b4:fused=3,1-2", "efficientnet_b4:fused=1-3"),
    ("efficientnet_b4:fused=1,2,3,5", "efficientnet_b4:fused=1-3,5"),
    ("efficientnet_b4:fused=1-7", "efficientnet_b4:fused=all"),
    ("efficientnet_b4:fused=2,4,width=0.50", "efficientnet_b4:fused=2,4,width=0.5"),
    ("efficientnetv2_s:width=1.0,depth=2.", "efficientnetv2_s:width=1,depth=2"),
    ("efficientnetv2_s:fused_kernel=keep", "efficientnetv2_s:fused_kernel=keep"),
    ("efficientnetv2_s:drop_path=.10", "efficientnetv2_s:drop_path=0.1"),
    ("efficientnetv2_s", "efficientnetv2_s"),
    ("custom:stem=24,stages=fmb_c24_r2/mb_s2_c48_e4_se0.25_relu,head=1280",
     "custom:stem=24,stages=fmb_r2_k3_s1_e1_c24/mb_r1_k3_s2_e4_c48_se0.25_relu,head=1280"),
])
def test_str_of_spec_is_normalised(text: str, normal: str) -> None:
    spec = parse_spec(text)
    assert str(spec) == normal
    assert parse_spec(normal).table == spec.table


def test_custom_spec_builds_what_it_says() -> None:
    model = netprobe.build("custom:stem=16,stages=fmb_r2_k3_s1_e1_c16/mb_r3_k5_s2_e4_c32_se0.25,head=64,classes=5",
                           device="meta")
    assert model.stage_names == ["stem", "stage1", "stage2", "head"]
    assert [len(model.stage1), len(model.stage2)] == [2, 3]
    assert [(f.channels, f.stride) for f in model.feature_info] == [(16, 2), (16, 2), (32, 4)]


# ---- property: any valid stage table round-trips through its canonical spec -------------------

EXPANDS = st.one_of(st.sampled_from([1.0, 2.5, 3.67, 4.0, 6.0]), st.floats(0.1, 16, allow_nan=False))
SE_RATIOS = st.one_of(st.just(0.0), st.floats(0.0, 1.0, allow_nan=False))
FRACTIONS = st.floats(0.0, 1.0, exclude_max=True, allow_nan=False)

def rows(max_repeats: int = 4) -> st.SearchStrategy[BlockSpec]:
    """Rows of every block kind, each with only the fields its kind takes (the others at their defaults)."""
    def of(op: str) -> st.SearchStrategy[BlockSpec]:
        fields = BLOCK_KINDS[op].fields
        return st.builds(
            BlockSpec,
            op=st.just(op),
            repeats=st.integers(1, max_repeats),
            kernel=st.sampled_from([1, 3, 5, 7]),
            stride=st.integers(1, 2),
            expand=EXPANDS if "e" in fields else st.just(BLOCK_KINDS[op].expand_default),
            out=st.integers(1, 256),
            se=SE_RATIOS if "se" in fields else st.just(0.0),
            act=st.one_of(st.none(), st.sampled_from(ACTS)),
        )

    return st.one_of(*(of(op) for op in OPS))


def tables(max_stages: int = 8, max_rows: int = 4, max_repeats: int = 4, max_width: int = 4096,
           ) -> st.SearchStrategy[NetSpec]:
    stage = st.lists(rows(max_repeats), min_size=1, max_size=max_rows).map(tuple)
    return st.builds(
        NetSpec,
        stem=st.integers(1, 256),
        stages=st.lists(stage, min_size=1, max_size=max_stages).map(tuple),
        head=st.integers(0, max_width),
        head_fc=st.integers(0, max_width),
        classes=st.integers(0, 100_000 if max_width > 1000 else max_width),
        act=st.sampled_from(ACTS),
        se_style=st.sampled_from(SE_STYLES),
        drop_path=FRACTIONS,
        dropout=FRACTIONS,
        imgsz=st.integers(1, 8192),
        stem_kernel=st.sampled_from([1, 3, 5, 7]),
        stem_pool=st.booleans(),
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_any_table_round_trips_through_its_canonical_spec(table: NetSpec) -> None:
    text = format_table(table)
    spec = parse_spec(text)
    assert spec.table == table
    assert format_table(spec.table) == text


@settings(max_examples=100, deadline=None)
@given(rows())
def test_any_block_round_trips_through_its_string(row: BlockSpec) -> None:
    assert parse_block(format_block(row)) == row


@settings(max_examples=5, deadline=None)
@given(tables(max_stages=3, max_rows=2, max_repeats=2, max_width=256))
def test_random_table_builds_the_same_model_from_its_canonical_spec(table: NetSpec) -> None:
    direct = netprobe.archs.build_net(table, device="meta")
    parsed = netprobe.build(format_table(table), device="meta")
    assert str(parsed) == str(direct)
    assert n_params(parsed) == n_params(direct)


# ---- fuzz: parse_spec either succeeds or raises a one-line SpecError --------------------------

SPECISH = "abcdefgnrstuvwx_0123456789:=,.-/+ \n"


def parses_or_spec_error(text: str) -> None:
    try:
        spec = parse_spec(text)
    except SpecError as err:
        assert len(str(err).splitlines()) == 1, str(err)
        assert "\n" not in str(err)
    else:
        assert isinstance(spec.table, NetSpec)
        assert parse_spec(spec.canonical).table == spec.table


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(),
    st.text(alphabet=SPECISH),
    st.builds(lambda a, rest: a + rest, st.sampled_from([*ARCHS, "custom", "efficientnet_b", "custom:"]),
              st.text(alphabet=SPECISH)),
))
@example("efficientnet_b4:fused=1-\n99")
@example("efficientnet_b4:fused=1-\x1c99")
@example("custom:stem=8,head=8,stages=mb_c8_e1e-05")
@example("efficientnet_b7:width=8")
def test_fuzz_parse_spec_raises_only_spec_error(text: str) -> None:
    parses_or_spec_error(text)


BLOCK_ALPHABET = "mbf_rksec0123456789.-" + "".join(ACTS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(alphabet=BLOCK_ALPHABET, max_size=24), min_size=1, max_size=3), min_size=1,
                max_size=3))
def test_fuzz_custom_block_strings(stages: list[list[str]]) -> None:
    parses_or_spec_error("custom:stem=8,head=16,stages=" + "/".join("+".join(st_) for st_ in stages))


KEYS = ["width", "depth", "fused", "fused_kernel", "fused_se", "se", "act", "classes", "drop_path", "dropout",
        "imgsz", "stem", "stages", "head", "head_fc", "se_style", "bogus", ""]
VALUES = st.one_of(
    st.text(max_size=12),
    # Numbers, ranges and the whitespace int() and float() accept around them (line breaks included).
    st.text(alphabet=string.digits + ".-e,+ \t\n\x0b\x0c\x1c\x85\u2028", max_size=8),
    st.sampled_from(["all", "none", "keep", "drop", "nan", "inf", "-inf", "1e999", "0", "-0", "1", "8", "9",
                     "1-3", "2,4", "3-1", "1-99", "0.5", "1.0", "relu", "mnv3", "9" * 5000]),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([*ARCHS, "custom"]), st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=4))
def test_fuzz_key_values_on_a_valid_arch(arch: str, pairs: list[tuple[str, str]]) -> None:
    text = arch + (":" + ",".join(f"{k}={v}" for k, v in pairs) if pairs else "")
    parses_or_spec_error(text)


STAGE_SET_ALPHABET = "0123456789-,  \t\n\x1c\u2028"


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(ARCHS)), st.text(alphabet=STAGE_SET_ALPHABET, min_size=1, max_size=8))
@example("efficientnet_b4", "1-\n99")
@example("efficientnet_b4", "1-\u202899")
def test_fuzz_fused_stage_sets(arch: str, stages: str) -> None:
    parses_or_spec_error(f"{arch}:fused={stages}")


# ---- error messages -----------------------------------------------------------------------------

def test_unknown_arch_suggests_the_closest() -> None:
    message = spec_error("efficientnetv2_z")
    assert "'efficientnetv2_z'" in message
    assert "did you mean" in message
    assert "efficientnetv2_s" in message


def test_unknown_arch_far_from_any_lists_them_all() -> None:
    message = spec_error("vit_b_16")
    assert "'vit_b_16'" in message
    assert all(a in message for a in ARCHS)


def test_unknown_key_names_it_and_suggests() -> None:
    message = spec_error("efficientnet_b4:widht=0.5")
    assert "'widht'" in message
    assert "did you mean width?" in message
    message = spec_error("efficientnet_b4:stem=32")  # a custom-only key
    assert "'stem'" in message
    assert "allowed keys are" in message


@pytest.mark.parametrize(("text", "names"), [
    ("efficientnet_b4:width=-1", ["width='-1'", "> 0"]),
    ("efficientnet_b4:width=nan", ["width='nan'"]),
    ("efficientnet_b4:depth=0", ["depth='0'", "> 0"]),
    ("efficientnet_b4:se=1.5", ["se='1.5'", "<= 1"]),
    ("efficientnet_b4:drop_path=1", ["drop_path='1'", "< 1"]),
    ("efficientnet_b4:classes=ten", ["classes='ten'", "integer"]),
    ("efficientnet_b4:act=swish", ["act='swish'", "silu"]),
    ("efficientnet_b4:fused_kernel=4", ["fused_kernel='4'", "odd"]),
    ("efficientnet_b4:width=", ["width=''"]),
    ("efficientnet_b4:width", ["'width'", "key=value"]),
    ("efficientnet_b4:width=1,width=2", ["'width'", "twice"]),
    ("efficientnet_b7:width=8", ["8192", "smaller width"]),
    ("", ["empty spec"]),
])
def test_bad_values_name_the_offending_part(text: str, names: list[str]) -> None:
    message = spec_error(text)
    for name in names:
        assert name in message


def test_fused_stages_out_of_range_names_the_valid_range() -> None:
    message = spec_error("efficientnet_b4:fused=9-12")
    assert "9-12" in message
    assert "efficientnet_b4" in message
    assert "1-7" in message
    assert "1-6" in spec_error("efficientnetv2_s:fused=7")
    assert "1-5" in spec_error("mobilenetv3_small:fused=0-2")
    assert "'x'" in spec_error("efficientnet_b4:fused=1-3,x")
    assert "3-1" in spec_error("efficientnet_b4:fused=3-1")


@pytest.mark.parametrize(("block", "names"), [
    ("mb_r1_k3", ["'mb_r1_k3'", "channels missing"]),
    ("xx_c8", ["'xx_c8'", "'xx'", "mb", "fmb"]),
    ("mb_c8_k4", ["'mb_c8_k4'", "k4", "odd"]),
    ("mb_c8_q2", ["'mb_c8_q2'", "'q2'"]),
    ("mb_c8_s3", ["'mb_c8_s3'", "stride"]),
    ("mb_c8_c16", ["'mb_c8_c16'", "twice"]),
    ("mb_c8_e0", ["'mb_c8_e0'", "expansion"]),
    ("mb_c8_se2", ["'mb_c8_se2'", "SE ratio"]),
    ("mb_c0", ["'mb_c0'", "channels"]),
])
def test_malformed_block_in_custom_names_the_block(block: str, names: list[str]) -> None:
    message = spec_error(f"custom:stem=8,stages=mb_c8/{block},head=16")
    for name in names:
        assert name in message


@pytest.mark.parametrize(("stages", "names"), [
    ("mb_c8/", ["stage 2 is empty", "one '/'"]),
    ("mb_c8//mb_c8", ["stage 2 is empty"]),
    ("/mb_c8", ["stage 1 is empty"]),
    ("mb_c8++mb_c8", ["row 2 of stage 1 is empty", "one '+'"]),
    ("mb_c8/mb_c8+", ["row 2 of stage 2 is empty"]),
])
def test_empty_stages_and_rows_are_called_empty_not_an_unknown_operator(stages: str, names: list[str]) -> None:
    message = spec_error(f"custom:stem=8,stages={stages},head=16")
    assert "operator" not in message
    for name in names:
        assert name in message


def test_block_fields_left_out_take_the_documented_defaults() -> None:
    assert "r, k, s, e default to r1, k3, s1, e1" in spec_error("custom:stem=8,stages=mb_r1,head=16")
    assert parse_block("mb_c24") == BlockSpec("mb", 1, 3, 1, 1.0, 24)
    assert parse_block("fmb_c24_s2") == BlockSpec("fmb", 1, 3, 2, 1.0, 24)


@pytest.mark.parametrize(("text", "names", "absent"), [
    ("efficientnet_b4:fused=3-1", ["3-1 is a reversed range", "1-3"], ["do not exist"]),
    ("efficientnet_b4:fused=1--3", ["'1--3' is not a stage number or range"], ["do not exist"]),
    ("efficientnet_b4:fused=1-3,", ["empty option at the end", "extra comma"], ["has no value"]),
    ("efficientnet_b4:fused=1-3,,width=0.5", ["empty option between two commas"], ["has no value"]),
    ("efficientnet_b4:width=0.5,", ["empty option at the end"], ["has no value"]),
    ("efficientnet_b4:,width=0.5", ["empty option at the start"], ["has no value"]),
])
def test_range_and_comma_mistakes_are_named_for_what_they_are(text: str, names: list[str],
                                                              absent: list[str]) -> None:
    message = spec_error(text)
    for name in names:
        assert name in message
    for name in absent:
        assert name not in message


@pytest.mark.parametrize(("typed", "meant"), [
    ("efficientnet_bo", ["efficientnet_b0"]),
    ("EFFICIENTNETV2_S", ["efficientnetv2_s"]),
    ("efficientnet-b4", ["efficientnet_b4"]),
    ("mobilenet_v3_larg", ["mobilenetv3_large"]),  # mobilenet_v3_large itself: torchvision's name, an alias
    ("efficientnetv2_z", ["efficientnetv2_s", "efficientnetv2_m", "efficientnetv2_l"]),
])
def test_did_you_mean_ranks_by_typing_distance_ignoring_case(typed: str, meant: list[str]) -> None:
    message = spec_error(typed)
    assert f"did you mean {' or '.join(meant)}?" in message


def test_echoed_input_is_cut_to_a_readable_length() -> None:
    for text in ("x" * 100_000, "efficientnet_b4:width=" + "9" * 100_000,
                 "custom:stem=8,head=8,stages=mb_c8_" + "q" * 100_000):
        message = spec_error(text)
        assert len(message) < 600 and "characters)" in message


def test_custom_without_stages_says_what_is_missing() -> None:
    message = spec_error("custom:stem=24,head=1280")
    assert "custom spec needs stages" in message
    assert "e.g. custom:" in message
    assert "stem, stages, head" in spec_error("custom")
    assert "'width'" not in spec_error("custom:width=0.5")  # missing stem/stages/head comes first


def test_too_many_stages_or_blocks() -> None:
    assert "at most 16" in spec_error("custom:stem=8,head=8,stages=" + "/".join(["mb_c8"] * 17))
    assert "2000" in spec_error("custom:stem=8,head=8,stages=" + "/".join(["mb_r64_c8"] * 8) + ",depth=8")


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)
    assert issubclass(SpecError, netprobe.NetprobeError)


@pytest.mark.parametrize("text", ["efficientnet_b5:depth=8", "efficientnetv2_xl:depth=8",
                                  "custom:stem=8,stages=mb_r64_c8,head=16,depth=8"])
def test_the_deepest_scaled_tables_round_trip(text):
    spec = parse_spec(text)
    assert parse_spec(spec.canonical).table == spec.table


def test_a_depth_that_makes_too_many_repeats_is_one_line():
    with pytest.raises(SpecError) as err:
        parse_spec("custom:stem=8,stages=mb_r512_c8,head=16,depth=8")
    assert str(err.value) == "depth=8 makes stage1 repeat a block 4096 times; at most 512: use a smaller depth"
    with pytest.raises(SpecError) as err:
        parse_spec("custom:stem=8,stages=mb_r600_c8,head=16")
    assert str(err.value) == ("block 'mb_r600_c8': repeats='600' is not allowed: repeats must be an integer >= 1 "
                              "and <= 512")
