"""Citation markers: which source each sentence of an answer came from (assistant.explain.citations)."""

from assistant.explain.citations import cite, from_explanation, mark

SOURCES = ["Refunds are paid back to the original card within five days of the return.",
           "Parcels to Europe arrive in two to four working days."]


def test_each_sentence_cites_the_source_holding_most_of_its_words():
    answer = ("Refunds go back to your original card within five days. Parcels to Europe take two to four "
              "working days. I hope this helps!")
    got = cite(answer, SOURCES)
    assert [(answer[a:b], n) for a, b, n in got] == [
        ("Refunds go back to your original card within five days.", 1),
        ("Parcels to Europe take two to four working days.", 2)]  # the closing pleasantry cites nothing


def test_chinese_compares_character_pairs():
    got = cite("退款会在五个工作日内退回原卡。我们很乐意帮忙。", ["退款会在五个工作日内退回到您的原支付卡。"])
    assert got == [(0, 15, 1)]


def test_short_sentences_need_every_word_and_nothing_comes_from_no_sources():
    assert cite("Five days.", SOURCES) == [(0, 10, 1)]
    assert cite("Ten days.", SOURCES) == []
    assert cite("Refunds take five days.", []) == []


def test_markers_go_after_the_last_of_a_run_and_never_inside_code():
    answer = "Refunds go back to the card. They take five days. Run `x`:\n```\nRefunds take five days.\n```\n"
    cites = [(0, 28, 1), (29, 49, 1), (65, 88, 1)]
    assert mark(answer, cites, "<", ">") == ("Refunds go back to the card. They take five days.<1> Run `x`:\n"
                                              "```\nRefunds take five days.\n```\n")


def test_explains_citations_become_spans_of_the_stored_answer():
    from types import SimpleNamespace as NS

    answer = "Refunds take five days. Parcels arrive in two days."
    expl = NS(sentences=[NS(text="Refunds take five days.", source=1, support=0.4),
                         NS(text=" Parcels arrive in two days.", source=None, support=0.01)])
    assert from_explanation(answer, expl) == [(0, 23, 1)]


def test_sources_are_shown_by_file_name_not_by_the_servers_folders():
    from assistant.web.chatview import sources_html
    from assistant.types import Source, Turn, shown_source

    turn = Turn(user="q", answer="a", sources=[
        Source(chunk_id="c1", doc_id="d1", source="/srv/acme/private/docs/en/refunds.md", text="Refunds take five days.",
               score=0.9),
        Source(chunk_id="c2", doc_id="d2", source="https://help.example.com/shipping", title="Shipping",
               text="Three days.", score=0.5),
    ])
    shown = sources_html(turn)
    assert "refunds.md" in shown and "/srv/acme" not in shown
    assert "https://help.example.com/shipping" in shown
    assert shown_source(r"C:\docs\faq.csv") == "faq.csv"
