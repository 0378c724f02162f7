"""Language detection on chat-like messages: scripts, short texts, the conversation prior, noise."""

import pytest

from assistant.errors import InputError
from assistant.understanding.language import CONFIDENCE_FLOOR, UNKNOWN, LanguageResult, clean_text, detect

SENTENCES = {
    "en": "I forgot my password and cannot log in to my account",
    "de": "Ich habe mein Passwort vergessen und kann mich nicht anmelden",
    "fr": "J'ai oublié mon mot de passe et je ne peux pas me connecter",
    "es": "Olvidé mi contraseña y no puedo iniciar sesión en mi cuenta",
    "it": "Ho dimenticato la password e non riesco ad accedere al mio account",
    "pt": "Esqueci a minha senha e não consigo entrar na minha conta",
    "nl": "Ik ben mijn wachtwoord vergeten en kan niet inloggen op mijn account",
    "tr": "Şifremi unuttum ve hesabıma giriş yapamıyorum",
    "ru": "Я забыл пароль и не могу войти в свой аккаунт",
    "uk": "Я забув пароль і не можу увійти до свого облікового запису",
    "ar": "نسيت كلمة المرور ولا أستطيع تسجيل الدخول إلى حسابي",
    "zh": "我忘记了密码，无法登录我的账户",
    "ja": "パスワードを忘れてしまい、アカウントにログインできません",
    "ko": "비밀번호를 잊어버려서 계정에 로그인할 수 없습니다",
    "th": "ฉันลืมรหัสผ่านและไม่สามารถเข้าสู่ระบบบัญชีของฉันได้",
    "el": "Ξέχασα τον κωδικό μου και δεν μπορώ να συνδεθώ",
    "he": "שכחתי את הסיסמה שלי ואני לא יכול להתחבר",
    "hi": "मैं अपना पासवर्ड भूल गया हूँ और लॉग इन नहीं कर पा रहा हूँ",
    "pl": "Zapomniałem hasła i nie mogę zalogować się na swoje konto",
    "vi": "Tôi quên mật khẩu và không thể đăng nhập vào tài khoản của mình",
}


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_sentences_in_many_languages_and_scripts(lang):
    result = detect(SENTENCES[lang])
    assert isinstance(result, LanguageResult)
    assert result.language == lang
    assert result.confidence >= 0.5


@pytest.mark.parametrize("text,lang", [
    ("谢谢", "zh"), ("你好", "zh"), ("ありがとう", "ja"), ("はい", "ja"), ("감사합니다", "ko"), ("네", "ko"),
    ("спасибо", "ru"), ("شكرا", "ar"), ("ขอบคุณ", "th"), ("ευχαριστώ", "el"),
    ("thanks", "en"), ("hello", "en"), ("ok", "en"), ("danke", "de"), ("merci", "fr"), ("gracias", "es"), ("grazie", "it"),
    ("thank you", "en"), ("vielen dank", "de"), ("muchas gracias", "es"), ("merci beaucoup", "fr"),
])
def test_single_words_and_two_word_messages(text, lang):
    assert detect(text).language == lang


def test_script_rule_wins_over_latin_names_inside_cjk_text():
    assert detect("播放 Lee Aaron 的 专辑 Everybody Happy").language == "zh"
    assert detect("我的password忘了怎么办").language == "zh"
    assert detect("ابحث عن فيلم Louder than Bombs").language == "ar"
    # A title longer than the Chinese around it: its words weigh as names, not as the message's script.
    assert detect("我想看 Pirates of the Caribbean: Dead Man's Chest").language == "zh"


def test_japanese_with_kanji_is_not_chinese():
    assert detect("東京の天気を教えてください").language == "ja"


def test_conversation_prior_decides_ambiguous_short_messages():
    assert detect("ok", prior=["de", "de", "de"]).language == "de"
    assert detect("ok", prior=["fr", "fr"]).language == "fr"
    # A clear message in another language overrides the prior.
    switched = detect("Can you help me with my invoice please?", prior=["de", "de", "de"])
    assert switched.language == "en"


def test_prior_raises_confidence_of_the_same_language():
    alone = detect("ja")
    with_prior = detect("ja", prior=["de", "de"])
    assert with_prior.language == "de"
    assert with_prior.confidence >= alone.confidence or alone.language != "de"


@pytest.mark.parametrize("text", ["", "   ", "😀😀🎉", "12345 678", "!!!???", "👍"])
def test_no_letters_gives_unknown_with_low_confidence(text):
    result = detect(text)
    assert result.language == UNKNOWN
    assert result.confidence < CONFIDENCE_FLOOR


def test_no_letters_follows_the_conversation():
    result = detect("👍", prior=["es", "es"])
    assert result.language == "es"
    assert result.confidence < 0.9


@pytest.mark.parametrize("code", [
    "print(x)", "def f(x): return x * 2", "```python\nfor i in range(10):\n    print(i)\n```",
    "SELECT * FROM users WHERE id = 1;", "x = {'a': [1, 2]}",
])
def test_code_only_messages_are_not_a_language(code):
    assert detect(code).language == UNKNOWN


def test_code_inside_a_sentence_keeps_the_sentence_language():
    text = "Warum funktioniert `print(x)` nicht in meinem Programm, obwohl alles richtig aussieht?"
    assert detect(text).language == "de"


def test_urls_emails_numbers_and_emoji_are_ignored():
    text = "Bonjour 😀 j'ai un problème avec https://example.com/path et mon adresse jean@example.fr 123456"
    assert detect(text).language == "fr"
    assert "example" not in clean_text(text)


def test_deterministic():
    texts = ["ok", "si", "hallo", "Ich habe eine Frage"]
    assert [detect(t) for t in texts] == [detect(t) for t in texts]


def test_non_string_is_an_input_error():
    with pytest.raises(InputError, match="must be a string"):
        detect(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("text,lang", [
    ("terima kasih", "id"), ("hesabım", "tr"), ("wachtwoord vergeten", "nl"), ("grazie mille", "it"),
    ("dziękuję bardzo", "pl"), ("obrigado", "pt"), ("besteld", "nl"), ("teşekkürler", "tr"),
])
def test_short_messages_use_word_frequencies(text, lang):
    assert detect(text).language == lang


def test_the_last_word_s_ending_counts():
    # langdetect only makes word-end n-grams ("rà ") for a word followed by a space; a one-word message is one.
    assert detect("pioverà").language == "it"


def test_titles_and_names_inside_a_sentence_do_not_decide_its_language():
    assert detect("Finde ein Foto von Adventure Time: The Secret of the Nameless Kingdom").language == "de"
    assert detect("Dove posso trovare The World According to Paris ?").language == "it"
    assert detect("给 The Tenor Wore Tapshoes 五 分").language == "zh"
    assert detect("في Fairview").language == "ar"


def test_kanji_only_in_japanese_forms_is_japanese_unless_the_conversation_is_chinese():
    assert detect("天気").language == "ja"
    assert detect("天気", prior=["zh", "zh"]).language == "zh"
    assert detect("天气").language == "zh"


@pytest.mark.parametrize("text", ["Spotify'da çal", "SC'de", "Itunes’ta", "saat 6'ya alarm kur", "Ali'nin evi",
                                  "The World According to Paris'i nerede bulabilirim?", "istanbul'da hava nasıl",
                                  "anda Londra'da", "6'ya", "6'ya alarm"])
def test_turkish_case_endings_after_an_apostrophe_are_turkish(text):
    # Turkish separates case endings from names and numbers with an apostrophe; the name itself is no evidence.
    assert detect(text).language == "tr"


@pytest.mark.parametrize("text,lang", [("D'accord, merci", "fr"), ("dell'anno scorso", "it"),
                                       ("It's Anna's book", "en"), ("Rock'n'Roll music is great", "en"),
                                       ("jusqu'a demain", "fr"), ("un'altra volta", "it"), ("we're here", "en")])
def test_other_apostrophes_are_not_taken_for_turkish(text, lang):
    assert detect(text).language == lang


def test_short_lower_case_words_inside_a_title_belong_to_the_title():
    # "in the" sits between two title words: it is part of the title, not English evidence for the sentence.
    assert detect("läuft Tarzan of the Apes in den Cobb Theatern?").language == "de"
    assert detect("speelt Tarzan of the Apes in Cobb Theatres").language == "nl"
