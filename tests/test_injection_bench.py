"""``python -m bench.injection --conditions``: names that hold a comma themselves are read whole."""

import pytest

from bench.injection import CONDITIONS, parse_conditions


def test_conditions_are_matched_by_name_not_split_at_every_comma():
    assert parse_conditions("on, no screening,on") == ("on, no screening", "on")
    assert parse_conditions(",".join(CONDITIONS)) == CONDITIONS
    assert parse_conditions("on,off") == ("on", "off")
    with pytest.raises(ValueError, match="unknown 'no screening'"):
        parse_conditions("on,no screening")  # without the space it is not the condition's name
