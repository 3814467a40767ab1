"""The `--set KEY=VALUE` parser every study script shares."""

import pytest

from scripts.study_common import parse_set


def test_parse_set_reads_literals_tuples_booleans_and_strings():
    got = parse_set(
        ["a.b=3", "lr=2e-4", "steps=(1560,)", "flag=true", "other=False", "name=labeled_pass"]
    )
    assert got == {
        "a.b": 3,
        "lr": 2e-4,
        "steps": (1560,),
        "flag": True,
        "other": False,
        "name": "labeled_pass",
    }
    assert isinstance(got["steps"], tuple)


@pytest.mark.parametrize("item", ["no_equals_sign", "=3"])
def test_parse_set_refuses_an_item_without_a_key_and_value(item):
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        parse_set([item])
