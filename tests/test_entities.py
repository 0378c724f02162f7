"""Entity extraction: built-in kinds, configurable ids, spans, no double counting."""

import pytest

from assistant.understanding.entities import DEFAULT_PATTERNS, Entity, extract
from assistant.errors import ConfigError, InputError
from assistant.understanding.intents import load_spec


def kinds(text, patterns=None):
    return {(e.kind, e.value) for e in extract(text, patterns)}


@pytest.mark.parametrize("text,expected", [
    ("write to anna.smith+support@example.co.uk please", ("email", "anna.smith+support@example.co.uk")),
    ("see https://example.com/help?page=2.", ("url", "https://example.com/help?page=2")),
    ("call me on +1 (555) 123-4567", ("phone", "+1 (555) 123-4567")),
    ("我的手机号是13812345678", ("phone", "13812345678")),
    ("delivered on 2024-05-01", ("date", "2024-05-01")),
    ("it was May 3, 2024", ("date", "May 3, 2024")),
    ("am 3. Mai bestellt", ("date", "3. Mai")),
    ("我在2024年5月1日下单", ("date", "2024年5月1日")),
    ("I paid $1,299.99 yesterday", ("amount", "$1,299.99")),
    ("es kostet 25 EUR", ("amount", "25 EUR")),
    ("付了100元", ("amount", "100元")),
    ("my order #A-123456 is late", ("order_id", "A-123456")),
    ("Bestellung ORD-98765432", ("order_id", "ORD-98765432")),
    ("订单号12345678还没到", ("order_id", "12345678")),
    ("ticket 88231 is still open", ("ticket_id", "88231")),
])
def test_kinds(text, expected):
    assert expected in kinds(text)


def test_spans_match_values_and_are_ordered():
    text = "Order 1234567 from 2024-01-02 cost €30, mail a@b.io or +44 20 7946 0958"
    entities = extract(text)
    assert [e.start for e in entities] == sorted(e.start for e in entities)
    for e in entities:
        assert isinstance(e, Entity)
        assert text[e.start:e.end] == e.value
    found = {e.kind for e in entities}
    assert {"order_id", "date", "amount", "email", "phone"} <= found


def test_a_date_or_amount_is_not_also_a_phone():
    assert kinds("2024-05-01") == {("date", "2024-05-01")}
    values = kinds("refund of $1,234,567.00")
    assert all(kind != "phone" for kind, _ in values)


@pytest.mark.parametrize("text", ["", "hello there", "😀😀", "version 3.10 works", "def f(x): return x"])
def test_nothing_to_find(text):
    assert extract(text) == []


def test_configured_patterns_replace_the_default_ids():
    patterns = {"invoice_id": r"\bINV-(\d{4})\b"}
    found = kinds("invoice INV-2024 for order 1234567", patterns)
    assert ("invoice_id", "2024") in found
    assert all(kind != "order_id" for kind, _ in found)


def test_intents_file_patterns_work():
    spec = load_spec()
    assert set(DEFAULT_PATTERNS) <= set(spec.entity_patterns)
    assert ("ticket_id", "4411") in kinds("TCK-4411 please", spec.entity_patterns)


def test_bad_pattern_and_bad_input_are_errors():
    with pytest.raises(ConfigError, match="'bad' is not a valid regular expression"):
        extract("x", {"bad": "(unclosed"})
    with pytest.raises(InputError, match="must be a string"):
        extract(None)  # type: ignore[arg-type]
