"""Program references: 'qa@production', 'qa:3', 'qa', and what is refused."""

from __future__ import annotations

import pytest

from dspyq.errors import InputError
from dspyq.program_ref import ProgramRef, check_alias, parse_program_ref
from dspyq.store.resolve import canary_share


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("qa@production", ProgramRef(name="qa", alias="production")),
        (" qa @ canary ", ProgramRef(name="qa", alias="canary")),
        ("qa:3", ProgramRef(name="qa", version=3)),
        ("qa", ProgramRef(name="qa")),
        ("my.program-v2", ProgramRef(name="my.program-v2")),
    ],
)
def test_references_parse_to_name_alias_and_version(text: str, expected: ProgramRef) -> None:
    ref = parse_program_ref(text)
    assert ref == expected
    assert parse_program_ref(str(ref)) == ref


def test_each_reference_says_its_kind() -> None:
    assert [parse_program_ref(t).kind for t in ("qa@prod", "qa:2", "qa")] == [
        "alias",
        "version",
        "latest",
    ]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "program name is empty"),
        ("@production", "program name is empty"),
        (":3", "program name is empty"),
        ("qa@", "alias is empty"),
        ("qa@  ", "alias is empty"),
        ("qa:", "version '' is not a whole number"),
        ("qa:three", "version 'three' is not a whole number"),
        ("qa:0", "version '0' is not a whole number"),
        ("qa:-1", "version '-1' is not a whole number"),
        ("qa:1.5", "version '1.5' is not a whole number"),
        ("qa@prod@x", "alias must be at most"),
        ("qa:3@prod", "may not contain"),
        ("x" * 256, "longer than 255"),
    ],
)
def test_malformed_references_are_input_errors_saying_what_is_wrong(
    text: str, complaint: str
) -> None:
    with pytest.raises(InputError) as caught:
        parse_program_ref(text)
    assert complaint in caught.value.message
    assert "'name@alias'" in caught.value.message


def test_a_reference_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(InputError, match="is a string, not int"):
        parse_program_ref(3)


def test_aliases_are_checked_alone_too() -> None:
    assert check_alias(" production ") == "production"
    with pytest.raises(InputError, match="alias is empty"):
        check_alias("")


def test_the_canary_share_is_fixed_per_job_and_even_over_jobs() -> None:
    assert canary_share("job-1") == canary_share("job-1")
    shares = [canary_share(f"job-{i}") for i in range(20_000)]
    assert all(0.0 <= s < 1.0 for s in shares)
    below = sum(s < 0.1 for s in shares) / len(shares)
    assert 0.09 < below < 0.11
