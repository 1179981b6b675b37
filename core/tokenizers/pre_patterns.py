"""llama.cpp's pre-tokenizer regexes (``llm_tokenizer_bpe``'s ``regex_exprs``), written for the standard ``re``.

Patterns named ``*_TEXT`` run over the text itself, as llama.cpp runs a regex without Unicode categories (its
``std::wregex`` path, where every non-ASCII White_Space character reads as U+000B); all others run over the class
string of :mod:`emberllm.tokenizers.unicode_classes`, as llama.cpp runs a regex with ``\\p{..}`` over its
"collapsed" text. There ``\\p{Lu}``, ``\\p{Ll}``... are all ``\\p{L}`` (llama.cpp has no letter cases for
non-ASCII text), so an upper-case-letter test ``(?=\\p{L})[^a-z]`` is ``[A-Z]`` plus every non-ASCII letter.
Each pattern's comment gives llama.cpp's form.
"""

from __future__ import annotations

from emberllm.tokenizers.unicode_classes import LETTER, SYM, L, M, N, P, S

# --- pieces ------------------------------------------------------------------------------------------------
#: (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])
_CONTRACTION = "'(?:[sStTmMdD]|[rR][eE]|[vV][eE]|[lL][lL])"
#: ``(?=[\p{L}])([^a-z])``: an ASCII capital or any non-ASCII letter
_UPPER = "A-Z" + LETTER
#: ``(?=[\p{L}])([^A-Z])``: an ASCII small letter or any non-ASCII letter
_LOWER = "a-z" + LETTER
#: the common tail: | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
_TAIL = rf"| ?[^{S}{L}{N}]+[\r\n]*|[{S}]*[\r\n]+|[{S}]+(?![^{S}])|[{S}]+"
#: the same with ``[\r\n/]*`` after punctuation (GPT-4o, Tekken)
_TAIL_SLASH = rf"| ?[^{S}{L}{N}]+[\r\n/]*|[{S}]*[\r\n]+|[{S}]+(?![^{S}])|[{S}]+"
#: ``\s`` of ``std::wregex`` over the text (ASCII White_Space and U+000B, which stands for the rest)
_WS_ASCII = "\t\n\x0b\x0c\r "

# --- Llama 3 and its relatives -----------------------------------------------------------------------------
#: Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
#: \s*[\r\n]+|\s+(?!\S)|\s+
_LLAMA3_BODY = rf"{_CONTRACTION}|[^\r\n{L}{N}]?[{L}]+|[{N}]{{DIGITS}}" + _TAIL
LLAMA3 = _LLAMA3_BODY.replace("{DIGITS}", "{1,3}")
#: Qwen2 (also Grok-2, Solar Open, Hunyuan): as Llama 3 but single digits
QWEN2 = _LLAMA3_BODY.replace("{DIGITS}", "")
#: MiniCPM5's second split: as Llama 3 but digit runs of any length
DIGIT_RUNS = _LLAMA3_BODY.replace("{DIGITS}", "+")
#: Qwen3.5: (?i:...)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
QWEN35 = (rf"{_CONTRACTION}|[^\r\n{L}{N}]?[{L}{M}]+|[{N}]| ?[^{S}{L}{M}{N}]+[\r\n]*|[{S}]*[\r\n]+"
          rf"|[{S}]+(?![^{S}])|[{S}]+")
#: UfakZeka: Qwen2 without the contractions
UFAKZEKA = rf"[^\r\n{L}{N}]?[{L}]+|[{N}]" + _TAIL
#: Seed-Coder: (?i:...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+
SEED_CODER = (rf"{_CONTRACTION}|[^\r\n{L}{N}]?[{L}]+|[{N}]| ?[^{S}{L}{N}\r\n]+|[{S}]*[\r\n]+"
              rf"|[{S}]+(?![^{S}])|[{S}]+")
#: Ling (BailingMoE): '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|
#: \s+(?!\S)|\s+  (llama.cpp's greedy form of the possessive original)
BAILINGMOE = (rf"{_CONTRACTION}|[^\r\n{L}{N}]?[{L}]+|[{N}]| ?[^{S}{L}{N}]+[\r\n]*|[{S}]*[\r\n]"
              rf"|[{S}]+(?![^{S}])|[{S}]+")
#: K-EXAONE: (?i:...)|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|
#: \s*[\r\n]|\s+(?!\S)|\s+
EXAONE_MOE = (rf"{_CONTRACTION}|[^\r\n{L}{N}]?(?:[{L}][{M}]*(?: [{L}][{M}]*)*)+|[{N}]| ?[^{S}{L}{N}]+[\r\n/]?"
              rf"|[{S}]*[\r\n]|[{S}]+(?![^{S}])|[{S}]+")
#: Jais 2: Llama 3 with whitespace runs cut at 512, 256, ... 4, 1-2 and 1
JAIS2 = (rf"{_CONTRACTION}|[^\r\n{L}{N}]?[{L}]+|[{N}]{{1,3}}| ?[^{S}{L}{N}]+[\r\n]*|[{S}]*[\r\n]+|"
         + "|".join(rf"[{S}]{{{n}}}(?![^{S}])" for n in ("512", "256", "128", "64", "32", "16", "8", "4", "1,2"))
         + rf"|[{S}]")

# --- GPT-4o style (letter case splits) ---------------------------------------------------------------------
#: Tekken (Mistral Nemo): [^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|
#: [^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|...
TEKKEN = rf"[^\r\n{L}{N}]?[{_UPPER}]*[{_LOWER}]+|[^\r\n{L}{N}]?[{_UPPER}]+[{_LOWER}]*|[{N}]" + _TAIL_SLASH
#: GPT-4o (Llama 4, MiniMax-M2): Tekken's letters with optional contractions and \p{N}{1,3}
GPT4O = (rf"[^\r\n{L}{N}]?[{_UPPER}]*[{_LOWER}]+(?:{_CONTRACTION})?"
         rf"|[^\r\n{L}{N}]?[{_UPPER}]+[{_LOWER}]*(?:{_CONTRACTION})?|[{N}]{{1,3}}" + _TAIL_SLASH)
#: Granite multilingual embeddings: GPT-4o with (?=[\p{L}\p{M}]) so marks join their letters
GRANITE_EMB_MULTI = (rf"[^\r\n{L}{N}]?[{_UPPER}{M}]*[{_LOWER}{M}]+(?:{_CONTRACTION})?"
                     rf"|[^\r\n{L}{N}]?[{_UPPER}{M}]+[{_LOWER}{M}]*(?:{_CONTRACTION})?|[{N}]{{1,3}}" + _TAIL_SLASH)
#: Tiny Aya's second split: [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+ is [\p{L}\p{M}]+ in
#: llama.cpp (all its letter classes are \p{L}); the second alternative can then never win
TINY_AYA = rf"[^\r\n{L}{N}]?[{L}{M}]+(?:{_CONTRACTION})?|[{N}]{{1,3}}" + _TAIL_SLASH
#: Youtu's second split: as Tiny Aya's with single digits
YOUTU = rf"[^\r\n{L}{N}]?[{L}{M}]+(?:{_CONTRACTION})?|[{N}]" + _TAIL_SLASH
#: Youtu's first split: Hangul, CJK punctuation, Bopomofo, CJK and kana runs
YOUTU_TEXT = ("[\uac00-\ud7a3\u3131-\u318e]+|[\uff01\u2026\u201c\u201d\u2018\u2019\u2014\uff1a\uff1b\uff0c"
              "\u3001-\u303f\ufe30-\ufe4f]+|[\u3105-\u312f]+|[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+")

# --- GPT-2 and the digit splitters -------------------------------------------------------------------------
#: GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
GPT2 = rf"'(?:[stmd]|re|ve|ll)| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}])|[{S}]+"
#: the default's and Falcon's first split: [\p{P}\$\+<=>\^~\|]+ (Falcon adds the backtick)
DEFAULT_PUNCT = rf"[{P}$+<=>^~|]+"
FALCON_PUNCT = rf"[{P}$+<=>^~|`]+"
#: Chameleon's punctuation split: [\p{P}!-/:-@\[-`{-~]
CHAMELEON_PUNCT = rf"[{P}!-/:-@\[-`{{-~]"
#: SuperBPE's second split (over the text, ``\d`` being ASCII in std::wregex): (?=(\d{3})+(?!\d)), the
#: empty matches cutting digit runs into threes from the right
THOUSANDS_TEXT = "(?=(?:[0-9]{3})+(?![0-9]))"
#: Poro, BLOOM, GPT3-Finnish and Viking:  ?[^(\s|.,!?…。，、।۔،)]+  (over the text)
PORO_TEXT = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+".replace("\\s", _WS_ASCII)

# --- DeepSeek ----------------------------------------------------------------------------------------------
#: DeepSeek V3's last split
DEEPSEEK3 = (r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+"""
             rf"|[^\r\n{L}{P}{SYM}]?[{L}{M}]+| ?[{P}{SYM}]+[\r\n]*|[{S}]*[\r\n]+|[{S}]+(?![^{S}])|[{S}]+")
#: Spark 2.5's third split: DeepSeek V3's with single newlines
SPARK2_5 = (r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+"""
            rf"|[^\r\n{L}{P}{SYM}]?[{L}{M}]+| ?[{P}{SYM}]+|[\r\n]|[{S}]+(?![^{S}])|[{S}]+")
CJK_KANA_TEXT = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
#: Trinity (AFMoE): CJK, kana, Thai, Lao, Khmer, Myanmar and Hangul runs (llama.cpp's ranges as written)
AFMOE_SCRIPTS_TEXT = ("[\u4e00-\u9fff\u3400-\u4dbf\u8c48-\ufaff\u3040-\u309f\u30a0-\u30ff\uff65-\uff9f"
                      "\u2f00-\u2fdf\u0e40-\u0e7f\u0e80-\u0eff\u1780-\u17ff\u1000-\u109f\uaa60-\uaa7f"
                      "\ua9e0-\ua9ff\uac00-\ud7af\u1100-\u11ff]+")

#: ``\s`` over the text (ASCII White_Space and U+000B, which stands for the rest)
WS_TEXT = f"[{_WS_ASCII}]"
# DeepSeek LLM's letter ranges (from its tokenizer.json)
DEEPSEEK_LETTERS = (
    "A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377"
    "\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f"
    "\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
    "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d"
    "\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb"
    "\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128"
    "\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4"
    "\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf"
    "\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943")
DEEPSEEK_PUNCT = "!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002"
DEEPSEEK_CJK = "\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff"

# --- Chameleon's special-token splits (over the text) ------------------------------------------------------
CHAMELEON_SENTINEL_TEXT = "<sentinel:[0-9]+>"
CHAMELEON_IMAGE_TEXT = "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"
CHAMELEON_SPACES_TEXT = "([\\t\\n]|    |  )"
