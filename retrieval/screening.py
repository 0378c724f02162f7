"""Screening at ingestion: passages that address the assistant instead of the reader.

A support document tells a customer how things work; it has no reason to tell
an AI assistant what to do.  Text that does — "ignore all previous
instructions", "you are now …", "reply only with …", a fake ``<system>`` tag,
a Markdown image whose address waits for the user's question — is an indirect
prompt injection (OWASP LLM01), and so is text a reader cannot see: white or
zero-size text in HTML, DOCX or PDF, invisible Unicode (zero-width and tag
characters, bidi overrides).  ``screen`` names what it found in one chunk;
the index keeps flagged chunks out of answers until an administrator allows
the document (``KnowledgeIndex.allow``).

Rules, not a model: each is a phrase pattern (English, Chinese, German,
Spanish, French, Russian, Portuguese, Japanese in depth; the commonest forms
in Arabic, Hindi, Turkish, Vietnamese, Greek, Romanian, Thai), so a finding always says
which words triggered it, and an administrator can judge it.  Its false
positives on ordinary documents are measured by ``bench/screening.py``
(xquad-dev in 12 languages, the shipped user guide); paraphrases it has no
pattern for pass — the prompt's spotlighting and the output guard are the
layers behind it.

Hidden text is collected by the readers (``ExtractedDocument.hidden``): text
styled so a reader cannot see it (font size 0, white text, opacity 0, moved
off-screen; DOCX hidden or white runs; PDF invisible or white text).  Text
merely collapsed (``display: none``, the ``hidden`` attribute: accordions,
tabs) is ordinary in FAQ pages and is screened only by the phrase rules.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Finding:
    """One reason to hold a passage back."""

    kind: str
    """instruction, role-tag, exfiltration, hidden-text or invisible-characters."""
    evidence: str
    """The words that triggered it (shortened)."""

    def __str__(self) -> str:
        return f"{self.kind}: {self.evidence}"


_AI = r"(?:ai|a\.i\.|assistant|chat ?bot|bot|llm|language model|model|gpt|copilot)"
_IMPERATIVE = (r"(?:always|never|ignore|disregard|forget|tell|say|reply|respond|answer|write|print|output|reveal|"
               r"include|start|begin|end|repeat|recommend|insert|add|mention|append|do not|don't|must|should)")

_ANY, _DOC, _MSG = "any", "document", "message"
"""Where a rule applies.  ``any``: text that tries to take the assistant over (erase or replace its
instructions, extract them, give it a new identity, forge a role tag) — wrong in a document and in a
user's message alike.  ``document``: text that tells the assistant what to put in its answers ("reply
only with …", "tell the user …", "before answering …") — wrong in a support document, ordinary in a
message ("answer in one sentence", "reply only in German", "just the number and nothing else").
``message``: the well-known jailbreak forms in a user's message — a persona or mode "without rules",
"developer mode enabled", DAN — whose words a document may use innocently ("the Pro version comes
without limits"), so only messages are checked for them."""

_LIMITS_EN = r"(?:rules|restrictions|limits|limitations|filters|guidelines|policies|guardrails|censorship|boundaries|constraints)"
_PERSONA_EN = r"(?:ai|a\.i\.|assistant|chat ?bot|bot|model|character|persona|mode|version of (?:you|yourself))"

_ZH_IGNORE = r"(?:忽略|无视|忘记|忘掉|不要理会|跳过)[^。\n]{0,12}?"
_DE_IGNORE = r"\b(?:ignorier\w*|vergiss|vergessen sie|missachte\w*)\b[^.;:!?\n]{0,40}?\b"

_RULES: list[tuple[str, str, str]] = [
    # -- English ------------------------------------------------------------------------
    ("instruction", _ANY, r"\b(?:ignore|disregard|forget|override|bypass|skip)\b[^.;:!?\n]{0,40}?\b(?:instructions?|prompts?|"
                    r"rules|guidelines|directions|directives|user'?s question|(?:the|all|these|your) (?:documents|context))\b"),
    ("instruction", _ANY, r"\b(?:reveal|print|repeat|output|disclose|leak|recite|show|tell|give)\b[^.;:!?\n]{0,40}?"
                    r"\b(?:your|the)\s+(?:system prompt|(?:initial |hidden |original |previous )?instructions|"
                    r"internal note|rules you were given|prompt above|confidential)"),
    ("instruction", _ANY, r"\bword for word\b[^.\n]{0,40}\binstructions\b|\binstructions\b[^.\n]{0,40}\bword for word\b|"
                    r"\b(?:repeat|output|print|write out|reproduce)\b[^.\n]{0,40}\b(?:everything above|above this line|"
                    r"(?:first|previous) messages? (?:in|of) (?:this|the) conversation|your (?:full |whole )?configuration)"),
    ("instruction", _DOC, r"\b(?:say|reply|answer|write|output|print|respond)\b[^.\n]{0,60}\band nothing else\b"),
    ("instruction", _ANY, r"\byou are now\b|\bfrom now on,?\s+you are\b|\bpretend (?:to be|you are)\b|\bnew instructions?\s*:"),
    ("instruction", _DOC, r"\bfrom now on,?\s+(?:you must|you only|you will only|always|only|answer|reply|respond)\b"),
    ("instruction", _DOC, rf"\b(?:notes?|messages?|instructions?|commands?|orders?)\s+(?:to|for)\s+(?:the\s+|any\s+)?{_AI}\b"),
    ("instruction", _DOC, rf"(?:^|[.!?;]\s+|\n)\s*{_AI}\s*[:,]\s*(?:[\w'’]+\s+){{0,4}}?{_IMPERATIVE}\b"),
    ("instruction", _DOC, rf"\bthe\s+{_AI}\s+(?:must|should|shall|has to|needs to|is required to|is instructed to)\s+"
                    r"(?:tell|say|reply|answer|reveal|include|write|print|respond|recommend|inform|ask|refuse|"
                    r"ignore|output|add|end|start)\b"),
    ("instruction", _DOC, r"\b(?:reply|respond|answer)\s+(?:only\s+)?(?:with|using)\s+(?:the\s+|a\s+)?(?:single\s+|one\s+)?"
                    r"(?:word|phrase|sentence|text|string|(?:markdown\s+)?image|link|url)\b|\b(?:reply|respond|answer)\s+only\s+(?:in|with)\b"),
    ("instruction", _DOC, r"\b(?:start|begin|end|finish|prefix|close)\s+(?:every|each|all|your|any)\s+(?:answers?|replies|"
                    r"responses?|messages?)\s+with\b"),
    ("instruction", _DOC, r"\bbefore (?:answering|you answer|replying|responding)\b|"
                    r"\b(?:in|to|into) (?:your|every|each|the) (?:answer|reply|response)\b"),
    ("instruction", _DOC, r"\btell (?:the|every|each|all|any) (?:users?|customers?|visitors?)\b"),
    ("role-tag", _ANY, r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id)\|>|<start_of_turn>|"
                 r"\[/?INST\]|<</?SYS>>|</?\s*(?:system|assistant|user|instructions?|document|docs-[0-9a-f]*|context)\s*>"),
    ("role-tag", _ANY, r"(?-i:\b(?:SYSTEM|ADMIN|DEVELOPER)\s+(?:MESSAGE|PROMPT|INSTRUCTIONS?|OVERRIDE|NOTE)\b|"
                 r"\bIMPORTANT\s+INSTRUCTIONS?\b)|\[(?:system|assistant|admin|developer)[^\]\n]{0,30}\]|"
                 r"(?:^|\n)\s*(?:system|developer)\s*:"),
    ("exfiltration", _ANY, r"!\[[^\]\n]*\]\(\s*https?://[^)\s]*(?:[A-Z]{3,}_[A-Z_]+|\{[^}]*\}|%7B|<[^>]*>|\$\w+)[^)]*\)"),
    # the jailbreak forms (message scope: see _MSG), by language
    ("instruction", _MSG, rf"\b{_PERSONA_EN}\b[^.;!?\n]{{0,30}}?\b(?:with no|without(?: any)?|free (?:of|from)|that has no|"
                    rf"who has no|with zero|not bound by(?: any)?)\s+(?:\w+\s+)?{_LIMITS_EN}\b|"
                    r"\b(?:unrestricted|unfiltered|uncensored|jailbroken|unchained|unshackled)\s+(?:\w+\s+)?"
                    r"(?:ai|assistant|chat ?bot|bot|model|mode|version|persona|character)\b|"
                    rf"\b(?:ignore|disregard|forget|abandon|break free (?:of|from))\s+(?:all\s+)?(?:of\s+)?your\s+(?:\w+\s+)?"
                    rf"(?:{_LIMITS_EN}|programming|safety|configuration|training)\b|"
                    r"\b(?:bypass|override|disable|turn off)\s+(?:all\s+)?(?:of\s+)?your\s+(?:\w+\s+)?(?:rules|guidelines|guardrails|"
                    r"censorship|programming|safety (?:rules|guidelines|filters))\b|"
                    rf"\b(?:you are|you're)\s+(?:now\s+)?(?:no longer|not)\s+(?:bound|restricted|limited)\s+by\b|"
                    r"\b(?:(?:you are|you're)\s+(?:now\s+)?(?:in|running in|operating in)|(?:enter|switch (?:to|into)|activate|"
                    r"enable)\s+(?:your\s+)?)(?:\w+\s+)?(?:god|jailbreak|sudo|unrestricted|unfiltered|uncensored|evil|dan)\s+mode\b|"
                    r"(?:^|[.!?]\s*)\W*(?:developer|dev|god|jailbreak|sudo|dan)\s+mode\s+(?:is\s+)?(?:now\s+)?"
                    r"(?:enabled|activated|on|engaged|unlocked)\s*(?:[.!:]|$)|"
                    r"(?-i:\bDAN\b)|\bdo anything now\b|"
                    r"\byour (?:new|real|true|updated) (?:instructions|rules|directives|programming) (?:are|is)\b"),
    ("instruction", _MSG, r"(?:AI|人工智能|助手|模式|角色|机器人)[^。！？\n]{0,15}?(?:没有|不受|无视|摆脱|不用遵守|不必遵守|"
                    r"不需要遵守|没有任何)(?:任何)?(?:规则|限制|约束|过滤|审查|规定|准则|道德)|"
                    r"(?:没有|不受|没有任何)(?:任何)?(?:规则|限制|约束|过滤|审查|道德)(?:约束|限制)?的(?:AI|人工智能|助手|角色|机器人)|"
                    r"(?:开发者|开发人员|上帝|越狱|DAN|无限制|无审查|无过滤)模式(?:已经?|现已)?(?:开启|启动|激活|打开|生效)|"
                    r"你(?:现在)?(?:已经)?(?:进入|处于|切换到)(?:了)?[^。！？\n]{0,6}?模式"),
    ("instruction", _MSG, r"\b(?:ki|modus|persona|assistent\w*|bot|charakter)\b[^.;!?\n]{0,30}?\b(?:ohne|keine)\s+"
                    r"(?:jegliche\w*\s+|irgendwelche\s+|jede\w*\s+)?(?:regeln?|einschränkung(?:en)?|beschränkung(?:en)?|filter|grenzen|richtlinien|zensur)\b|"
                    r"\b(?:du bist|du befindest dich|wechsle|wechsel|schalte?)\s+(?:jetzt\s+|nun\s+)?(?:in den|im)\s+"
                    r"(?:\w+[- ])?(?:entwickler|developer|gott|god|jailbreak|dan|uneingeschränkt\w*)[- ]?modus\b"),
    ("instruction", _MSG, r"\b(?:ia|modo|personaje|asistente|bot)\b[^.;!?\n]{0,30}?\b(?:sin|ningun[ao]s?)\s+"
                    r"(?:ningun[ao]s?\s+)?(?:reglas?|restricci[oó]n(?:es)?|l[ií]mites?|filtros?|censura|pol[ií]ticas?|normas?)\b|"
                    r"\bmodo\s+(?:desarrollador|dios|jailbreak|dan|sin restricciones|sin filtros)\s+(?:est[aá]\s+)?(?:ahora\s+)?"
                    r"(?:activado|activo|habilitado|encendido)\b"),
    ("instruction", _MSG, r"\b(?:ia|mode|personnage|assistant|bot)\b[^.;!?\n]{0,30}?\b(?:sans|aucune?s?)\s+"
                    r"(?:aucune?\s+)?(?:règles?|restrictions?|limites?|filtres?|censure|politiques?|contraintes?)\b|"
                    r"\bmode\s+(?:développeur|dieu|jailbreak|dan|sans restrictions?|sans filtres?)\s+(?:est\s+)?(?:maintenant\s+)?"
                    r"(?:activé|actif|enclenché)\b"),
    ("instruction", _MSG, r"(?:\bии\b|режим|персонаж|ассистент|бот)[^.;!?\n]{0,30}?\bбез\s+(?:каких-либо\s+|всяких\s+|"
                    r"любых\s+)?(?:правил|ограничений|фильтров|цензуры|запретов)|"
                    r"режим\w*\s+(?:разработчика|бога|джейлбрейка|dan|без ограничений)\s+(?:теперь\s+)?(?:включ|активир)\w*"),
    ("instruction", _MSG, r"\b(?:ia|modo|personagem|assistente|bot)\b[^.;!?\n]{0,30}?\b(?:sem|nenhuma?s?)\s+"
                    r"(?:nenhuma?\s+)?(?:regras?|restriç(?:ão|ões)|restricoes|limites?|filtros?|censura|políticas?|normas?)\b|"
                    r"\bmodo\s+(?:desenvolvedor|developer|deus|jailbreak|dan|sem restrições|sem filtros)\s+(?:está\s+)?(?:agora\s+)?"
                    r"(?:ativado|ativo|habilitado|ligado)\b"),
    ("instruction", _MSG, r"(?:AI|アシスタント|モード|キャラ|人格)[^。！？\n]{0,15}?(?:ルール|制限|制約|フィルター|規則|検閲|"
                    r"倫理)(?:が|の|は)?(?:一切)?(?:ない|無い|なし|無し|から解放)|"
                    r"(?:ルール|制限|制約|フィルター|規則|検閲)(?:も|が)?(?:一切)?(?:ない|無い|なし|無し)(?:の)?(?:AI|アシスタント|キャラ|人格)|"
                    r"(?:指示|命令|指令|ルール|規則|制限|設定)(?:は|を|も)(?:すべて|全て|一切)?(?:無視|忘れ|破棄|解除)|"
                    r"(?:開発者|デベロッパー|ゴッド|脱獄|ジェイルブレイク|DAN|無制限)モード(?:が|を|に)?(?:有効|オン|起動|開始|発動|切り替え|入)"),
    ("instruction", _MSG, r"(?:ذكاء|وضع|شخصية|مساعد)[^.؟!\n]{0,30}?(?:بدون|بلا|دون)\s+(?:أي\s+)?(?:قواعد|قيود|حدود|فلاتر|"
                    r"رقابة|ضوابط)|وضع\s+(?:المطور|المطورين|الإله|كسر الحماية|DAN|بلا قيود)\s+(?:مفعل|تم تفعيله|قيد التشغيل)|"
                    # verb first, as Arabic mostly puts it: "تم تفعيل وضع المطور" (developer mode has been enabled)
                    r"(?:^|[.!؟?\n]\s*)\W*(?:لقد\s+)?(?:تم|جرى)\s+(?:تفعيل|تشغيل)\s+وضع\s+(?:المطور|المطورين|الإله|"
                    r"كسر الحماية|DAN|بلا قيود)(?:\s+(?:الآن|بنجاح))?\s*(?:[.!:؛]|$)"),
    ("instruction", _MSG, r"\b(?:ai|trợ lý|chế độ|nhân vật)\b[^.;!?\n]{0,30}?\b(?:không có|không bị|không cần|bỏ qua mọi)\s+"
                    r"(?:bất kỳ\s+|mọi\s+)?(?:quy tắc|giới hạn|hạn chế|bộ lọc|kiểm duyệt|ràng buộc)\b|"
                    r"\bchế độ\s+(?:nhà phát triển|developer|thần|jailbreak|dan|không giới hạn)\s+(?:đã\s+)?(?:được\s+)?(?:bật|kích hoạt)"),
    ("instruction", _MSG, r"(?:AI|एआई|मोड|किरदार|सहायक)[^।.!?\n]{0,30}?(?:बिना|कोई भी|कोई)\s+(?:किसी\s+)?(?:भी\s+)?(?:नियम|प्रतिबंध|"
                    r"सीमा|सीमाओं|फ़िल्टर|फिल्टर|रोक-टोक|पाबंदी)|(?:बिना|बग़ैर|बगैर)\s+(?:किसी\s+)?(?:भी\s+)?(?:नियम|प्रतिबंध|"
                    r"सीमा|सीमाओं|फ़िल्टर|फिल्टर|रोक-टोक|पाबंदी)\S*\s+(?:वाले|वाला|वाली)\s+(?:AI|एआई|सहायक|किरदार)|(?:डेवलपर|गॉड|जेलब्रेक|DAN)\s+मोड\s+(?:अब\s+)?(?:चालू|सक्रिय|ऑन|एक्टिवेट)"),
    ("instruction", _MSG, r"\b(?:kuralsız|sınırsız|filtresiz|sansürsüz|kısıtlamasız)\s+(?:bir\s+)?(?:yapay zeka|yz|ai|asistan|mod|karakter|"
                    r"bot|versiyon|sürüm)\w*|\b(?:hiçbir\s+)?(?:kuralı|kısıtlaması|sınırı|filtresi)\s+olmayan\s+(?:bir\s+)?"
                    r"(?:yapay zeka|yz|ai|asistan|karakter|bot)|\b(?:geliştirici|developer|tanrı|jailbreak|dan)\s+mod(?:u)?\s+"
                    r"(?:artık\s+)?(?:aktif|açık|etkin)"),
    # -- Chinese ------------------------------------------------------------------------
    ("instruction", _ANY, rf"{_ZH_IGNORE}(?:指令|指示|说明|提示词?|规则|要求)"),
    ("instruction", _DOC, rf"{_ZH_IGNORE}问题"),  # a user may well say "forget my question"
    ("instruction", _ANY, r"(?:泄露|透露|输出|打印|重复|显示|告诉)[^。\n]{0,10}?(?:系统提示|系统指令|你的指令|内部说明|内部备注)"),
    ("instruction", _ANY, r"你现在是|从现在(?:开始|起)[，,]?\s*你是"),
    ("instruction", _DOC, r"从现在(?:开始|起)[，,]?\s*你(?:只|必须|要始终)|(?:只|仅)(?:能)?(?:回复|回答|输出)|"
                    r"告诉(?:用户|每个用户|所有用户|客户)|在(?:每个|每条|你的|所有)?(?:回答|回复)(?:的)?(?:开头|结尾|末尾|前面|中)"),
    ("instruction", _DOC, r"(?:给|致|对)(?:AI|人工智能|助手|模型|机器人)的(?:说明|指令|提示|消息)|"
                    r"(?:^|[。！？\n])\s*(?:AI|人工智能|助手|模型)[：:]\s*(?:请)?(?:忽略|总是|始终|永远|告诉|说|回复|回答|输出|"
                    r"透露|泄露|不要|务必|必须|在)"),
    ("role-tag", _ANY, r"系统(?:消息|提示|指令)[：:]"),
    # -- German -------------------------------------------------------------------------
    ("instruction", _ANY, rf"{_DE_IGNORE}(?:anweisungen|instruktionen|vorgaben|regeln|befehle)\b"),
    ("instruction", _DOC, rf"{_DE_IGNORE}frage\b"),  # "vergiss meine Frage" is the user's own
    ("instruction", _ANY, r"\bdu bist (?:jetzt|nun|ab sofort)\b|\bab (?:jetzt|sofort) bist\b|"
                    r"\b(?:gib|nenne|wiederhole|verrate)\w*\b[^.\n]{0,30}?\b(?:systemprompt|systemanweisung\w*|"
                    r"deine anweisungen)\b"),
    ("instruction", _DOC, r"\bab (?:jetzt|sofort) (?:antwortest|sollst|musst)\b|"
                    r"\bantworte(?:n sie)? (?:nur|ausschließlich) (?:mit|auf|in)\b|"
                    r"\b(?:sag|sage|sagen sie|teile|teilen sie)\w* (?:dem|jedem|allen) (?:nutzer|benutzer|kunden)\w*\b|"
                    r"\b(?:hinweis|anweisung|nachricht)\w* (?:an|für) (?:die|den) (?:ki|assistent\w*|bot|modell)\b"),
    # -- Spanish ------------------------------------------------------------------------
    ("instruction", _ANY, r"\b(?:ignora|ignore|ignorar|ignoren|olvida|olvide|olvidar|omite|omitir)\b[^.;:!?\n]{0,40}?"
                    r"\binstrucciones\b|\bahora eres\b|\ba partir de ahora,?\s+eres\b|"
                    r"\b(?:revela|muestra|repite|imprime)\b[^.\n]{0,30}?\b(?:tus instrucciones|"
                    r"(?:el )?(?:prompt|mensaje|instrucciones) del sistema)\b"),
    ("instruction", _DOC, r"\ba partir de ahora,?\s+(?:responde|contesta|debes)\b|"
                    r"\b(?:responde|contesta|responda|conteste)\s+(?:solo|solamente|únicamente)\s+(?:con|en)\b|"
                    r"\b(?:dile|diga|di)\s+(?:al|a cada|a todos los)\s+(?:usuario|cliente)s?\b|"
                    r"\b(?:nota|mensaje|instrucci[oó]n)\w* para (?:la|el) (?:ia|asistente|modelo|bot)\b"),
    # -- French -------------------------------------------------------------------------
    ("instruction", _ANY, r"\b(?:ignore[rz]?|oublie[rz]?|néglige[rz]?)\b[^.;:!?\n]{0,40}?\b(?:instructions|consignes|règles)\b|"
                    r"\b(?:tu es|vous êtes) maintenant\b|"
                    r"\b(?:révèle|révélez|affiche|affichez|répète|répétez)\b[^.\n]{0,30}?\b(?:tes|vos) instructions\b|"
                    r"\b(?:invite|prompt|message) système\b"),
    ("instruction", _DOC, r"\bà partir de maintenant,?\s+(?:tu|vous|réponds|répondez)\b|"
                    r"\b(?:réponds|répondez)\s+(?:uniquement|seulement)\s+(?:par|avec|en)\b|"
                    r"\b(?:dis|dites)\s+(?:à l'|à l’|à chaque |aux )(?:utilisateur|client)s?\b|"
                    r"\b(?:note|message|instruction)s? (?:à|pour) l['’](?:ia|assistant)\b"),
    # -- Russian ------------------------------------------------------------------------
    ("instruction", _ANY, r"(?:игнорируй|игнорируйте|забудь|забудьте|проигнорируй)\w*[^.;:!?\n]{0,40}?(?:инструкци|указани|правил(?!ьн))\w*|"
                    r"\bтеперь ты\b|системн\w+ (?:промпт|подсказк|инструкци|сообщени)\w*"),
    ("instruction", _DOC, r"\bотныне\b|\bотвечай(?:те)? только\b|\bскажи(?:те)? (?:пользовател|клиент)\w*|"
                    r"(?:примечание|сообщение|инструкция) для (?:ии|ассистента|модели|бота)\b"),
    # -- Portuguese ---------------------------------------------------------------------
    ("instruction", _ANY, r"\b(?:ignore|ignora|esqueça|esqueca)\b[^.;:!?\n]{0,40}?\binstruções\b|\bagora você é\b|"
                    r"\bprompt do sistema\b"),
    ("instruction", _DOC, r"\bresponda (?:apenas|somente) (?:com|em)\b|\bdiga ao (?:usuário|cliente)\b"),
    # -- Arabic, Hindi, Turkish, Vietnamese, Greek, Romanian, Thai: the commonest forms ---
    ("instruction", _ANY, r"(?:تجاهل|تجاهلي|انس|تخط)[^.؟!\n]{0,30}?(?:التعليمات|الأوامر|التوجيهات)|أنت الآن|"
                    r"(?:موجه|تعليمات|رسالة) النظام"),
    ("instruction", _DOC, r"أخبر (?:المستخدم|العميل)"),
    ("instruction", _ANY, r"(?:निर्देशों|निर्देश|आदेशों)[^।.\n]{0,20}?(?:अनदेखा|नज़रअंदाज़|नजरअंदाज|भूल)|अब (?:तुम|आप) एक (?:\S+ ){1,2}?(?:हो|हैं)(?=\s|$|[।.!?])|"
                    r"सिस्टम प्रॉम्प्ट"),
    ("instruction", _ANY, r"\b(?:önceki|tüm|bütün)\b[^.\n]{0,20}?\btalimatlar\w*\b[^.\n]{0,20}?\b(?:yok say|görmezden gel|unut)\w*|"
                    r"\bartık sen\b|\bsistem (?:istemi|komutu|talimat)\w*"),
    ("instruction", _ANY, r"\bbỏ qua\b[^.\n]{0,30}?\b(?:hướng dẫn|chỉ dẫn|chỉ thị|lệnh)\b|\bbây giờ bạn là\b|"
                    r"\b(?:lời nhắc|chỉ thị) hệ thống\b"),
    ("instruction", _DOC, r"\bnói với người dùng\b"),
    ("instruction", _ANY, r"(?:αγνόησε|αγνοήστε|ξέχνα|ξεχάστε)[^.;\n]{0,30}?οδηγίες|\bτώρα είσαι\b"),
    ("instruction", _ANY, r"\b(?:ignoră|ignorați|uită|uitați)\b[^.\n]{0,30}?\binstrucțiunile\b|\bacum ești\b"),
    ("instruction", _ANY, r"(?:ละเว้น|เพิกเฉย|ไม่ต้องสนใจ)[^\n]{0,15}?คำสั่ง|ตอนนี้คุณคือ"),
    # -- Japanese -----------------------------------------------------------------------
    ("instruction", _ANY, r"(?:以前|前|上記|これまで|全て|すべて)の(?:指示|命令|指令|ルール)を(?:無視|忘れ)|あなたは今|"
                    r"システムプロンプト"),
    ("instruction", _DOC, r"(?:のみ|だけ)で(?:答え|回答|返答|返信)|ユーザーに(?:伝え|言っ)"),
]
# Text is NFKC-folded before matching; so are the patterns (Thai SARA AM, for one, comes apart under NFKC).
_COMPILED = [(kind, scope, re.compile(unicodedata.normalize("NFKC", pattern), re.IGNORECASE | re.MULTILINE))
             for kind, scope, pattern in _RULES]

_HARAKAT = re.compile("[\u064b-\u065f\u0670\u0640]")
"""Arabic short-vowel and shadda marks and the tatweel, optional in writing ("المطوّر" is "المطور"): left out
before matching, as the rules are written without them."""

_SMUGGLING = re.compile("[\U000e0000-\U000e007f\u202d\u202e]")
"""Always suspicious: Unicode tag characters (they carry ASCII no reader sees) and bidi overrides."""
_INVISIBLE = re.compile("[\u200b-\u200d\u2060-\u2064\ufeff\u180e\u202a-\u202c\u2066-\u2069]")
"""Suspicious in numbers: zero-width space, (non-)joiners, word joiner, invisible operators, bidi embeddings
and isolates.  Wikipedia text has a stray zero-width space or two (2 of 1,440 xquad-dev paragraphs hold
2), Hindi and Persian need the (non-)joiners, so only ``MAX_INVISIBLE`` or more in one chunk count."""
MAX_INVISIBLE = 8

MIN_HIDDEN_CHARS = 12
"""Hidden snippets shorter than this (a stray space, an icon's label) are ignored."""


def screen(text: str, hidden: Iterable[str] = ()) -> list[Finding]:
    """What in ``text`` (one chunk) addresses the assistant, or hides from the reader; [] when nothing.

    ``hidden``: snippets the reader found styled invisible in the source file; a chunk containing one is
    flagged, since that text reaches the model but no person reading the page sees it.
    """
    return _screen(text, hidden, (_ANY, _DOC))


def screen_message(text: str) -> list[Finding]:
    """What in a user's message tries to take the assistant over (the ``any`` rules: erase or replace its
    instructions, extract them, a new identity, a forged role tag, smuggled invisible characters; and the
    ``message`` rules: the well-known jailbreak forms, a persona or mode without rules, DAN); []
    when nothing.  A request about the answer's form ("reply only in German") is not a finding here."""
    return _screen(text, (), (_ANY, _MSG))


def _screen(text: str, hidden: Iterable[str], scopes: tuple[str, ...]) -> list[Finding]:
    findings: list[Finding] = []
    seen: set[str] = set()
    folded = _HARAKAT.sub("", unicodedata.normalize("NFKC", text))
    for kind, scope, pattern in _COMPILED:
        if scope not in scopes:
            continue
        for m in pattern.finditer(folded):
            evidence = _shorten(m.group(0))
            if evidence.lower() not in seen:
                seen.add(evidence.lower())
                findings.append(Finding(kind, f"“{evidence}”"))
            break
    smuggled = _SMUGGLING.findall(text)
    invisible = smuggled + _INVISIBLE.findall(text)
    if smuggled or len(invisible) >= MAX_INVISIBLE:
        names = sorted({unicodedata.name(c[0], f"U+{ord(c[0]):04X}") for c in invisible})
        findings.append(Finding("invisible-characters",
                                f"{len(invisible)} invisible character(s): {', '.join(names[:3]).lower()}"))
    flat = _flat(text)
    for snippet in hidden:
        s = _flat(snippet)
        if len(s) >= MIN_HIDDEN_CHARS and s in flat:
            findings.append(Finding("hidden-text", f"styled invisible in the file: “{_shorten(snippet)}”"))
            break
    return findings


def screen_all(texts: Sequence[str], hidden: Iterable[str] = ()) -> list[list[Finding]]:
    hidden = tuple(hidden)
    return [screen(t, hidden) for t in texts]


def _flat(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split()).lower()


def _shorten(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- hidden text in HTML --------------------------------------------------------------

_CONCEALING_STYLE = re.compile(
    r"font-size\s*:\s*0(?:\.0*)?(?:px|pt|em|rem|%)?\s*(?:;|$|!)|"
    r"(?<![-\w])color\s*:\s*(?:#fff(?:fff)?\b|white\b|rgba?\(\s*255\s*,\s*255\s*,\s*255)|"
    r"opacity\s*:\s*0(?:\.0*)?\s*(?:;|$|!)|"
    r"(?:left|top|text-indent)\s*:\s*-\d{3,}|"
    r"clip\s*:\s*rect\(\s*0|"
    r"(?:width|height)\s*:\s*0(?:px)?\s*;[^\"']*overflow\s*:\s*hidden",
    re.IGNORECASE)
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def html_hidden_text(raw: str) -> list[str]:
    """Text of elements styled so a reader cannot see it (see the module docstring), and HTML comments
    that read like instructions; each as one snippet."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Parser(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.stack: list[tuple[str, bool]] = []  # (tag, this element conceals)
            self.buffers: list[list[str]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag in _VOID:
                return
            a = {k.lower(): (v or "") for k, v in attrs}
            style = a.get("style", "")
            conceals = bool(_CONCEALING_STYLE.search(style)) and "background" not in style.lower()
            self.stack.append((tag, conceals))
            if conceals:
                self.buffers.append([])

        def handle_endtag(self, tag: str) -> None:
            while self.stack:
                name, conceals = self.stack.pop()
                if conceals:
                    found.append(" ".join("".join(self.buffers.pop()).split()))
                if name == tag:
                    break

        def handle_data(self, data: str) -> None:
            for buf in self.buffers:
                buf.append(data)

        def handle_comment(self, data: str) -> None:
            if screen(data):
                found.append(" ".join(data.split()))

    parser = Parser()
    parser.feed(raw)
    parser.close()
    while parser.buffers:
        found.append(" ".join("".join(parser.buffers.pop()).split()))
    return [s for s in found if s]
