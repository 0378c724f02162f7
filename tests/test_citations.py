"""Citation markers: which source each sentence of an answer came from (assistant.explain.citations)."""

from assistant.explain.citations import anchors, cite, from_explanation, mark

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


GUIDE = ["Start the assistant with the adapter loaded: `assistant chat --adapter ./my-adapter`, or set "
         "`ASSISTANT_ADAPTER=./my-adapter` for the server.",
         "Supported formats: Markdown (`.md`) and plain text (`.txt`), web pages (`.html`), PDF with a text "
         "layer (`.pdf`) and Word documents (`.docx`).",
         "Open the admin area (it needs the admin key set with `ASSISTANT_ADMIN_KEY`) and choose Upload."]


def test_a_sentence_translated_from_its_source_cites_it_by_the_words_a_translation_keeps():
    answer = ("Für den Server setzen Sie `ASSISTANT_ADAPTER=./my-adapter`. Sie können Markdown (.md), Text "
              "(.txt), HTML, PDF und Word (.docx) hochladen. 管理区需要用 ASSISTANT_ADMIN_KEY 设置的密钥。"
              "Vielen Dank für Ihre Geduld.")
    got = [(answer[a:b].strip(), n) for a, b, n in cite(answer, GUIDE)]
    assert got == [("Für den Server setzen Sie `ASSISTANT_ADAPTER=./my-adapter`.", 1),
                   ("Sie können Markdown (.md), Text (.txt), HTML, PDF und Word (.docx) hochladen.", 2),
                   ("管理区需要用 ASSISTANT_ADMIN_KEY 设置的密钥。", 3)]  # the thanks keeps no word: no marker
    assert [n for *_, n in cite(answer, GUIDE, by_anchors=False)] == [2]  # word overlap alone: the list only


def test_anchors_no_source_holds_or_holds_only_a_few_of_cite_nothing():
    assert cite("Setzen Sie `ASSISTANT_RETRY=1` und `--threads 4`.", GUIDE) == []
    # one anchor of three in a source is not enough
    assert cite("Sie brauchen `ASSISTANT_ADMIN_KEY`, `OPENAI_KEY` und `HF_TOKEN`.", GUIDE) == []
    assert anchors("Die Antwort kommt in 5 Sekunden, per E-Mail.") == set()  # short numbers, native words
    assert anchors("使用 assistant index list 命令查看 PDF。") == {"assistant", "index", "list", "pdf"}


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
