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
# Short chat messages in 16 languages, none of them an example in the file (the file has 2-4 per language for
# greeting, thanks, goodbye and handoff), plus controls in English and Chinese.
MULTILINGUAL_PARAPHRASES = {
    "buongiorno a tutti": "greeting", "привет всем": "greeting", "merhabalar": "greeting", "halo kak": "greeting",
    "bonjour à vous": "greeting", "γεια χαρά": "greeting", "chào anh": "greeting",
    "grazie tante": "thanks", "огромное спасибо вам": "thanks", "çok teşekkür ederim": "thanks",
    "本当にありがとうございます": "thanks", "شكرا لك": "thanks", "makasih banyak ya kak": "thanks",
    "cảm ơn rất nhiều": "thanks", "dziękuję za pomoc": "thanks", "muito obrigada pela ajuda": "thanks",
    "dank je wel voor je hulp": "thanks", "감사드립니다": "thanks", "बहुत बहुत धन्यवाद": "thanks",
    "пока-пока": "goodbye", "görüşmek üzere": "goodbye", "tchau tchau": "goodbye", "tot de volgende keer": "goodbye",
    "voglio parlare con una persona vera": "human_handoff", "позовите оператора": "human_handoff",
    "canlı destek istiyorum": "human_handoff", "أريد التحدث إلى شخص حقيقي": "human_handoff",
    "me transfere para um atendente humano": "human_handoff",
    "how can i get a new password": "question", "密码怎么修改": "question",
    "my order never arrived and i am angry": "complaint", "我的订单还没到": "complaint",
    "what's the capital of peru": "out_of_scope", "tell me something funny about cats": "out_of_scope",
}
