"""The welcome text, the example prompts and the fixed replies name the documents actually loaded."""

from __future__ import annotations

import pytest

from assistant import scope


@pytest.fixture
def indexes(tmp_path):
    from retrieval.embedding import HashingEmbedder
    from retrieval.index import KnowledgeIndex

    guide = tmp_path / "guide"
    (guide / "zh").mkdir(parents=True)
    (guide / "chatting.md").write_text("# Chatting with the assistant\n\n" + "Type a message and press Enter. " * 40)
    (guide / "explain.md").write_text("# The Explain view: why did it answer this?\n\nExplain shows the sources.\n")
    (guide / "zh" / "chatting.md").write_text("# 与助手聊天\n\n" + "输入消息后按回车键发送。" * 40)
    only_guide = KnowledgeIndex.create(tmp_path / "a", HashingEmbedder())
    only_guide.add_paths([guide], tags=("default",))

    team = tmp_path / "team"
    team.mkdir()
    (team / "refunds.md").write_text("# Refund policy\n\n" + "Refunds are paid back to the card within five days. " * 60)
    (team / "shipping.md").write_text("# Shipping times — Europe\n\nParcels arrive in two to four days.\n")
    (team / "markup.md").write_text("# **Bold** [click](https://evil.example)\n\nA title made of markup.\n")
    with_team = KnowledgeIndex.create(tmp_path / "b", HashingEmbedder())
    with_team.add_paths([guide], tags=("default",))
    with_team.add_paths([team])
    return only_guide, with_team


def test_topics_name_the_loaded_documents_largest_first_in_the_users_language(indexes):
    only_guide, with_team = indexes
    assert scope.topics(only_guide, "en") == (["Chatting with the assistant", "The Explain view"], 0)
    assert scope.topics(only_guide, "zh") == (["与助手聊天"], 0)
    # no document in German: the English ones, never a list mixing two scripts
    assert scope.topics(only_guide, "de") == scope.topics(only_guide, "en")
    shown, more = scope.topics(with_team, "en")
    assert shown[0] == "Refund policy" and len(shown) == 3 and more == 2
    assert scope.topics_text(with_team, "en").endswith(" …")


def test_fill_puts_the_titles_where_the_reply_says_and_drops_the_bracket_without_an_index(indexes):
    only_guide, _ = indexes
    reply = "Sorry, I can't help with that. I answer questions from my documents ({topics}), or get a person."
    assert scope.fill(reply, only_guide, "en") == ("Sorry, I can't help with that. I answer questions from my "
                                                  "documents (Chatting with the assistant, The Explain view), "
                                                  "or get a person.")
    assert scope.fill(reply, None, "en") == "Sorry, I can't help with that. I answer questions from my documents, " \
                                            "or get a person."
    assert scope.fill("抱歉。我可以根据我的文档（{topics}）回答问题。", only_guide, "zh") == "抱歉。我可以根据我的文档（与助手聊天）回答问题。"
    assert scope.fill("No placeholder here.", only_guide) == "No placeholder here."


def test_example_prompts_follow_what_is_loaded(indexes):
    only_guide, with_team = indexes
    assert scope.example_prompts(only_guide) == list(scope.GUIDE_EXAMPLES)
    assert scope.example_prompts(None) == list(scope.GUIDE_EXAMPLES)
    team = scope.example_prompts(with_team)
    assert team[0] == "What can you help me with?" and team[1] == "Summarise “Refund policy”"
    assert not any("Chatting" in p for p in team)  # the guide's documents are not the team's
    assert scope.example_prompts(with_team, ("Where is my order?",)) == ["Where is my order?"]


def test_the_welcome_shows_document_titles_literally(indexes):
    from assistant.web.admin import Settings
    from assistant.web.chat_page import header_markdown

    _, with_team = indexes
    settings = Settings("Ava", "Hi! Ask me about {topics}.", "prompt", ())
    text = header_markdown(settings, with_team)
    assert text.startswith("## Ava\nHi! Ask me about Refund policy")
    assert "[click](" not in text and "**Bold**" not in text  # markup in a title cannot form a link


def test_the_shipped_replies_all_carry_the_placeholder_in_every_language():
    from assistant.understanding.intents import load_spec

    spec = load_spec()
    for name in ("out_of_scope", "capabilities"):
        replies = spec.get(name).replies
        assert len(replies) >= 21
        missing = [lang for lang, text in replies.items() if scope.PLACEHOLDER not in text]
        assert missing == [], (name, missing)
        # none of them describes products, orders or billing that no loaded document is about
        assert "orders" not in replies["en"] and "Bestellungen" not in replies["de"]


def test_example_prompts_from_a_config_file(tmp_path):
    from assistant.config import AppConfig
    from assistant.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text('example_prompts: ["Where is my order, please?", "How do refunds work?"]\n')
    assert AppConfig.load(path).example_prompts == ("Where is my order, please?", "How do refunds work?")
    assert AppConfig(example_prompts="Hi, what can you do?").example_prompts == ("Hi, what can you do?",)
    with pytest.raises(ConfigError, match="example_prompts"):
        AppConfig(example_prompts=[1, 2])
