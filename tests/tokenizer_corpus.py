"""A deterministic multilingual test corpus for tokenizers (mixed scripts, emoji, code, whitespace, digits).

:func:`corpus` builds the same lines on every run from fixed fragments and a seeded ``random.Random``.
"""

from __future__ import annotations

import random
import unicodedata

_PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "I've been told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL",
    "It's 3:45 p.m. on 2024-02-29; the price was $1,234.56 (incl. 19% VAT).",
    "Don't stop—won't stop… “quoted” ‘single’ «guillemets» and „German“ quotes.",
    "Hello,world!How are you?I'm fine...really!!!",
    "e-mail: someone@example.com, URL: https://example.org/path?q=1&r=two#frag",
    "ALL CAPS SENTENCE WITH NUMBERS 1234567890 AND SYMBOLS #@!",
    "naïve café résumé coöperate façade Ångström Øresund Straße",
    "Übermäßig große Äpfel öffnen Türen. Ça va? Déjà vu!",
    "Ελληνικά: Καλημέρα κόσμε, τι κάνεις;",
    "Русский: Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Українська: Гей, хлопці, вставаймо! Ґанок і їжак.",
    "中文：我想在apple工作1314151天～你好，世界！這是繁體字。",
    "日本語：こんにちは世界。カタカナとひらがな、漢字を混ぜます。ｱｲｳｴｵ（半角）",
    "한국어: 안녕하세요 세계! 대한민국 만세 123",
    "العربية: مرحبا بالعالم، كيف حالك؟ ١٢٣٤٥٦٧٨٩٠",
    "עברית: שלום עולם, מה שלומך?",
    "हिन्दी: नमस्ते दुनिया, आप कैसे हैं? १२३४५",
    "বাংলা: হ্যালো বিশ্ব। தமிழ்: வணக்கம் உலகம். ไทย: สวัสดีชาวโลก",
    "ქართული: გამარჯობა მსოფლიო. Հայերեն: Բարեւ աշխարհ. ខ្មែរ: កាន់តែពិសេសអាច",
    "Tiếng Việt: Xin chào thế giới, tôi là người Việt Nam.",
    "Emoji: 🚀 (normal) 😶\u200d🌫️ (multiple) ✅ 🦙🦙 👨\u200d👩\u200d👧\u200d👦 family 🏳️\u200d🌈 flag 👍🏽 thumbs",
    "More emoji: 🇩🇪🇯🇵🇺🇸 ❤️‍🔥 🧑🏿‍💻 ☕️ ♻️ 1️⃣ #️⃣ 🔟",
    "Math: ∀x∈ℝ, x² ≥ 0; ∑_{i=1}^{n} i = n(n+1)/2; π ≈ 3.14159; √2 ≠ 1.41",
    "Mixed-script words: apple苹果яблоко تفاحة सेब 사과 りんご",
    "Contractions: y'all'd've, ma'am, o'clock, rock 'n' roll, 'tis, SHE'S, THEY'RE, I'LL",
    "Fullwidth: ＡＢＣ１２３！？ and ideographic space　here.",
    "Combining marks: e\u0301 a\u0308 n\u0303 ḁ̥ ̃tilde x\u0336\u0336",
    "Zero width: a\u200bb\u200cc\u200dd\ufeffe and nbsp\u00a0here and thin\u2009space",
    "Edge cases: it'ſ x'K a\x1cb a\x85b  \u2028c ǅx x🏻y \xa0\xa0a 1١٢٣٤ tab\t\t\tend \x00 \x7f \ufffd",
    "Numbers: 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 1e-10 0x1F 0b1010 ½ ⅓ Ⅻ ⑫",
]

_CODE = [
    "def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)",
    "for (int i = 0; i < 10; ++i) { printf(\"%d\\n\", i * i); }",
    "const add = (a, b) => a + b; // arrow function\nexport default { add };",
    "fn main() {\n\tlet v: Vec<u32> = (0..100).filter(|x| x % 3 == 0).collect();\n\tprintln!(\"{:?}\", v);\n}",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
    "<html><body class=\"main\"><p>Hello &amp; welcome!</p></body></html>",
    "#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))\nint main(void){return 0;}",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}",
    "if [ -f ~/.bashrc ]; then source ~/.bashrc; fi && echo $HOME | grep -v '^#'",
    "{\"key\": [1, 2.5, -3e8, true, null], \"nested\": {\"a\": \"b\\u00e9\"}}",
    "x = [i**2 for i in range(10) if i % 2 == 0]  # list comprehension\n\n\n",
    "    indented    with    spaces\t\tand\ttabs   \n   trailing   ",
    "public static void main(String[] args) throws IOException { System.out.println(args.length); }",
    "$ git commit -m 'fix: handle \\r\\n line endings'\r\nWindows line\r\nend\r\n",
    "a===b!==c<=d>=e&&f||g??h?.i::j->k=>l<<=m>>>=n",
]

_WHITESPACE = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", " \n", "\n ", " \t ", "\r\n",
               "\u3000", "\u00a0", "        ", "\n    ", "\t\n\t"]

_WORDS = ["hello", "world", "token", "Tokenizer", "BPE", "merge", "rank", "llama", "qwen", "deep", "seek", "über",
          "naïve", "数据", "模型", "тест", "слово", "كلمة", "शब्द", "単語", "단어", "λόγος", "🙂", "🤖", "x", "I",
          "'s", "'ll", "don't", "e.g.", "etc.", "(", ")", "[", "]", "{", "}", "--", "...", "!!", "??", "#", "@",
          "$", "%", "^", "&", "*", "_", "=", "+", "|", "\\", "/", "<", ">", "~", "`", ":", ";", "\"", ","]


def _random_line(rng: random.Random, specials: list[str]) -> str:
    """One line of random words, numbers, whitespace runs and (sometimes) special tokens."""
    parts: list[str] = []
    for _ in range(rng.randint(3, 14)):
        roll = rng.random()
        if roll < 0.45:
            parts.append(rng.choice(_WORDS))
        elif roll < 0.6:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
        elif roll < 0.8:
            parts.append(rng.choice(_WHITESPACE))
        elif roll < 0.9 and specials:
            parts.append(rng.choice(specials))
        else:
            parts.append(chr(rng.choice([rng.randint(0x21, 0x7E), rng.randint(0xA1, 0x24F),
                                         rng.randint(0x370, 0x52F), rng.randint(0x4E00, 0x9FA5),
                                         rng.randint(0x1F300, 0x1F64F), rng.randint(0x0900, 0x097F)])))
        if rng.random() < 0.6:
            parts.append(" ")
    return "".join(parts)


def corpus(specials: list[str] | None = None, n_random: int = 440, seed: int = 1234) -> list[str]:
    """The corpus lines: fixed prose and code (each also with a leading space), then ``n_random`` random
    lines that embed the given special-token texts. All lines are NFC-normalized (Hugging Face's Qwen
    normalizer applies NFC; llama.cpp does not normalize)."""
    rng = random.Random(seed)
    specials = specials or []
    fixed = _PROSE + _CODE + _WHITESPACE
    lines = fixed + [" " + line for line in fixed]
    for special in specials:
        lines.append(f"{special}Hello{special} world {special}\n{special}")
    lines += [_random_line(rng, specials) for _ in range(n_random)]
    return [unicodedata.normalize("NFC", line) for line in lines]
