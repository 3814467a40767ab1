"""Tests for the error formatter of train.py / eval.py (jaxmr.cli)."""

from jaxmr import cli
from jaxmr.data import recipe1m


def test_layout_error_keeps_headline_and_listing(tmp_path, capsys):
    root = tmp_path / "recipe1m"
    root.mkdir()

    def fail():
        recipe1m.check_layout(str(root))

    assert cli.run_cli(fail) == 1
    err = capsys.readouterr().err.splitlines()
    # One headline naming the missing file, then the layout listing, each line intact.
    assert err[0] == (
        f"error: Recipe1MLayoutError: missing Recipe1M file layer1.json: {root}/layer1.json"
    )
    assert err[1] == "  expected the published Recipe1M layout under the root folder:"
    listing = "\n".join(err[1:])
    for line in recipe1m.EXPECTED_LAYOUT.splitlines():
        assert "  " + line in listing
    assert err[-1].strip() == "root/recipes_with_nutritional_info.json   (optional)"


def test_single_line_and_traceback_messages_stay_one_line():
    assert cli.format_message(ValueError("bad value")) == "bad value"
    assert cli.format_message(ValueError("")) == "ValueError"
    embedded = "call failed\nTraceback (most recent call last):\n  File x\nKeyError: 'k'"
    assert cli.format_message(RuntimeError(embedded)) == "call failed KeyError: 'k'"


def test_long_listing_is_capped_with_a_count():
    msg = "head\n" + "\n".join(f"line {i}" for i in range(cli.MAX_DETAIL_LINES + 5))
    out = cli.format_message(ValueError(msg)).splitlines()
    assert out[0] == "head" and len(out) == cli.MAX_DETAIL_LINES + 2
    assert out[-1] == "  ... (5 more lines; JAXMR_TRACEBACK=1 shows all)"
