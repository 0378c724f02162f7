"""Held-out messages for the intent tests: paraphrases that are in no example of knowledge/intents.yaml."""

ENGLISH_PARAPHRASES = {
    "hey, good morning to you": "greeting",
    "thanks so much for the help!": "thanks",
    "alright, bye for now": "goodbye",
    "how can i change the email on my account?": "question",
    "the package came broken and nobody replies": "complaint",
    "please let me speak with a real human being": "human_handoff",
}
MORE_PARAPHRASES = {
    "can you recommend a restaurant near me": "out_of_scope",
    "非常感谢你的帮助": "thanks",
    "我想跟人工客服聊": "human_handoff",
}
