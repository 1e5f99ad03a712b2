"""The gate's rules on what a description may say: hostile YAML, numbers, names."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from medimeta_cli.catalog.datasets import BUNDLED_CATALOG
from medimeta_cli.catalog.file import load_catalog
from medimeta_cli.dataset.gate import DESCRIPTION_RULES, MAX_IMAGE_SIDE, InfoError, describe_info
from medimeta_cli.text import shown
from tests.support.archives import CRC, DR_REGULAR, info_yaml, tiny_spec

Edit = Callable[[dict[str, Any]], None]


def edited(edit: Edit, spec: Any = CRC) -> bytes:
    """The info.yaml of ``spec`` after ``edit`` changed its parsed contents."""
    info = yaml.safe_load(info_yaml(spec))
    edit(info)
    return yaml.safe_dump(info, sort_keys=False, allow_unicode=True).encode()


def refused(raw: bytes, dataset_id: str = "crc") -> str:
    """The one-line reason the gate refuses ``raw``, found within half a second."""
    started = time.perf_counter()
    with pytest.raises(InfoError) as caught:
        describe_info(raw, dataset_id)
    assert time.perf_counter() - started < 0.5
    reason = caught.value.reason
    assert "\n" not in caught.value.message and len(caught.value.message) < 400
    return reason


# --------------------------------------------------------------------------- hostile YAML


def billion_laughs(levels: int = 9) -> bytes:
    """The classic: each level an anchor holding nine aliases of the one before (9**9)."""
    lines = ["id: crc", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{aliases}]")
    lines.append(f"name: *l{levels}")
    return ("\n".join(lines) + "\n").encode()


def test_a_billion_laughs_is_refused_in_milliseconds() -> None:
    raw = billion_laughs()
    assert len(raw) < 1000
    assert "alias" in refused(raw)


def test_any_alias_is_refused_even_a_harmless_one() -> None:
    """Upstream info files never use aliases: one would only ever expand something."""
    text = info_yaml(CRC).replace("domain:", "shared: &d Histology\ndomain: *d\nold_domain:", 1)
    assert "alias" in refused(text.encode())


@pytest.mark.parametrize("style", ["flow", "block", "mappings"])
def test_deep_nesting_is_refused_without_recursion(style: str) -> None:
    depth = 50_000
    if style == "flow":
        nested = "[" * depth + "]" * depth
        raw = f"id: crc\nname: {nested}\n"
    elif style == "block":
        depth = 600  # two spaces per level: the file stays under the size cap
        raw = "id: crc\nname:\n" + "".join("  " * i + "-\n" for i in range(depth))
    else:
        depth = 600
        raw = "id: crc\nname:\n" + "".join("  " * (i + 1) + "k:\n" for i in range(depth))
    reason = refused(raw.encode())
    assert "nest" in reason


def test_an_oversized_info_file_is_refused() -> None:
    raw = info_yaml(CRC).encode() + b"#" * (2 << 20)
    assert "too large" in refused(raw)


# --------------------------------------------------------------------------- numbers


def _set(path: tuple[Any, ...], value: Any) -> Edit:
    def edit(info: dict[str, Any]) -> None:
        target: Any = info
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _absurd_count(info: dict[str, Any]) -> None:
    """10**12 images, the splits agreeing (so only the count's size is wrong)."""
    extra = 10**12 - info["total_num_samples"]
    info["total_num_samples"] += extra
    info["splits_num_samples"]["train"] += extra
    info["original_splits_num_samples"]["train"] += extra


def _label_key(task: int, old: int, new: Any) -> Edit:
    def edit(info: dict[str, Any]) -> None:
        labels = info["tasks"][task]["labels"]
        labels[new] = labels.pop(old)

    return edit


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_set(("total_num_samples",), float("inf")), "total_num_samples is inf"),
        (_set(("total_num_samples",), float("nan")), "total_num_samples is nan"),
        (_set(("total_num_samples",), 12.0), "not a whole number"),
        (_set(("splits_num_samples", "train"), float("inf")), "splits_num_samples.train"),
        (_set(("original_splits_num_samples", "test"), 2.5), "not a whole number"),
        (_set(("splits_num_samples", "train"), -1), "negative count"),
        (_absurd_count, "not a count from 0 to 100,000,000"),
        (_set(("input_size",), [3, float("inf"), 224]), "input_size is inf"),
        (_set(("input_size",), [3, 20_000, 20_000]), f"1 to {MAX_IMAGE_SIDE} pixels"),
        (_set(("input_size",), [3, 0, 224]), "must be positive"),
        (_set(("input_size",), [7, 224, 224]), "channels"),
        (_set(("input_size",), [True, 224, 224]), "not a whole number"),
        (_label_key(0, 1, float("inf")), "a label key is inf"),
        (_label_key(0, 1, float("nan")), "a label key is nan"),
        (_label_key(0, 1, 2**70), "beyond int64"),
        (_label_key(0, 1, -(2**63) - 1), "beyond int64"),
        (_label_key(0, 1, 1.9), "a label key is 1.9"),
        (_label_key(0, 1, "1"), "a label key is '1'"),
    ],
    ids=[
        "count-inf",
        "count-nan",
        "count-float",
        "split-inf",
        "original-split-float",
        "count-negative",
        "count-absurd",
        "size-inf",
        "size-huge",
        "size-zero",
        "channels",
        "size-bool",
        "key-inf",
        "key-nan",
        "key-2**70",
        "key-below-int64",
        "key-float",
        "key-string",
    ],
)
def test_numbers_are_checked(edit: Edit, words: str) -> None:
    assert words in refused(edited(edit))


def test_a_float_key_never_collapses_onto_another() -> None:
    """1.9 next to 1 would have become a second label 1 (renaming a class)."""

    def edit(info: dict[str, Any]) -> None:
        info["tasks"][0]["labels"][1.9] = "impostor"

    assert "1.9" in refused(edited(edit))


def test_an_int64_key_at_the_limit_and_upstream_counts_pass() -> None:
    describe_info(edited(_label_key(0, 1, 2**63 - 1)), "crc")
    spec = tiny_spec("tiny")
    assert describe_info(info_yaml(spec).encode(), "tiny").num_samples == spec.num_images


# --------------------------------------------------------------------------- names


def _task_name(name: str, task: int = 0) -> Edit:
    return _set(("tasks", task, "task_name"), name)


def _label_name(name: str, key: int = 0) -> Edit:
    return _set(("tasks", 0, "labels", key), name)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_task_name("kind\x1b[2J"), "control character"),
        (_task_name("two\nlines"), "control character"),
        (_task_name("back\rspace"), "control character"),
        (_task_name("bidi\u202eevil"), "control character"),
        (_task_name("del\x7f"), "control character"),
        (_task_name("a..b"), "'..'"),
        (_task_name("x" * 101), "longer than 100"),
        (_task_name("   "), "is empty"),
        (_label_name("neg\x1b]0;title\x07"), "control character"),
        (_label_name("x" * 201), "longer than 200"),
        (_label_name(""), "is empty"),
    ],
    ids=[
        "task-escape",
        "task-newline",
        "task-cr",
        "task-bidi",
        "task-del",
        "task-dotdot",
        "task-long",
        "task-blank",
        "label-osc",
        "label-long",
        "label-empty",
    ],
)
def test_names_are_data(edit: Edit, words: str) -> None:
    reason = refused(edited(edit, DR_REGULAR), "dr_regular")
    assert words in reason
    # The reason names the offender escaped: printed, it cannot act on a terminal.
    assert shown(reason) == reason


def test_names_differing_only_in_case_are_refused() -> None:
    def tasks(info: dict[str, Any]) -> None:
        info["tasks"][1]["task_name"] = info["tasks"][0]["task_name"].upper()

    assert "one name in any case" in refused(edited(tasks, DR_REGULAR), "dr_regular")

    def labels(info: dict[str, Any]) -> None:
        names = info["tasks"][0]["labels"]
        names[1] = names[0].swapcase()

    assert "one name in any case" in refused(edited(labels, DR_REGULAR), "dr_regular")


def test_every_rule_is_registered_once() -> None:
    names = [rule.__name__ for rule in DESCRIPTION_RULES]
    assert len(set(names)) == len(names)
    assert {"count_rule", "input_size_rule", "task_name_rule", "label_key_rule"} <= set(names)


def test_the_escaping_function() -> None:
    assert shown("a\x1b[31mb\rc\nd\u202e") == "a\\x1b[31mb\\x0dc\\x0ad\\u202e"
    assert shown("a\nb\tc\x00", keep_lines=True) == "a\nb\tc\\x00"
    assert shown("Bowen\u2019s disease / ok") == "Bowen\u2019s disease / ok"


def test_every_bundled_dataset_passes_every_rule() -> None:
    """The rules refuse nothing upstream says (the bundled catalog is built from it)."""
    catalog = load_catalog(BUNDLED_CATALOG)
    assert len(catalog.datasets) == 19
    for dataset in catalog.datasets:
        assert [rule(dataset) for rule in DESCRIPTION_RULES] == [None] * len(DESCRIPTION_RULES)
