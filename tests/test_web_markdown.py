"""web/markdown.js in headless Chromium: linear work on pathological input, CommonMark/GFM results, safety, streaming.

The repo's ``web/`` is served on 127.0.0.1 and the module imported into a blank page.  Needs ``/usr/bin/chromium``
and Python ``playwright``; skips with the reason when one is missing.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .browser import CHROMIUM, FLAGS

WEB = Path(__file__).resolve().parent.parent / "web"
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
TAGS = {"div", "span", "button", "pre", "code", "p", "br", "h3", "h4", "h5", "h6", "hr", "blockquote", "ul", "ol",
        "li", "table", "thead", "tbody", "tr", "th", "td", "strong", "em", "del", "a"}
ATTRS = {"class", "href", "title", "target", "rel", "start", "type", "aria-label", "data-lang"}

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium (/usr/bin/chromium) is not installed")


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Python playwright is not installed")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(WEB)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with sync_api.sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                str(tmp_path_factory.mktemp("chromium-md")), executable_path=str(CHROMIUM), args=FLAGS, headless=True)
            try:
                pg = ctx.pages[0] if ctx.pages else ctx.new_page()
                pg.errors = []
                pg.on("pageerror", lambda err: pg.errors.append(str(err)))
                pg.route(url + "blank.html", lambda route: route.fulfill(
                    content_type="text/html", body="<!doctype html><meta charset=utf-8><title>md</title><body>"))
                pg.goto(url + "blank.html")
                pg.evaluate("""async () => {
                    window.md = await import('/markdown.js');
                    window.render = (text) => { const d = document.createElement('div');
                                                md.renderMarkdown(text, d); return d; };
                }""")
                yield pg
                assert pg.errors == []
            finally:
                ctx.close()
    finally:
        server.shutdown()
        server.server_close()


def html(page: Any, text: str) -> str:
    return page.evaluate("(t) => render(t).innerHTML", text)


def p(inner: str) -> str:
    return f"<p>{inner}</p>"


A = 'target="_blank" rel="noopener noreferrer nofollow"'
MISMATCH = "link-host link-host-mismatch"


def link(href: str, text: str) -> str:
    return f'<a href="{href}" title="{href}" {A}>{text}</a>'


# ------------------------------------------------------------------------------------------------- linear time

# name -> unit repeated to the length, after "x " (so that a line of backticks is not a fence) unless BLOCK_LEVEL
BLOCK_LEVEL = {"quotes", "ordered", "items", "lines", "rows", "fences", "headings", "code"}
PATTERNS = {
    "backticks": "`", "tick mix": "`a``b```", "tick pairs": "`` `", "asterisks": "*", "underscores": "_",
    "tildes": "~", "brackets": "[", "parens": "(",
    "backslashes": "\\", "images": "![", "open links": "[a](", "close-open": "](", "emphasis": "*a ", "strong": "**a",
    "under": "_a_ ", "strike": "~~a", "angle": "<http", "urls": "http://x(", "quotes": "> ", "ordered": "1. ",
    "items": "- a\n  ", "lines": "a\n", "rows": "|-\n", "fences": "```\n", "mixed": "*_[`~\\(!<]h)",
    "headings": "#\n", "code": "```js\n/*'\"`\\x1 if // <!-- \n",
}


def test_pathological_inputs_take_linear_work(page: Any) -> None:
    figures = page.evaluate("""(patterns) => {
        const make = (prefix, unit, n) => (prefix + unit.repeat(Math.ceil(n / unit.length))).slice(0, n);
        const generated = {
            nested: (n) => '['.repeat(n / 2 - 2) + 'a' + ']'.repeat(n / 2 - 3) + '(b)',
            'tick runs': (n) => { let s = ''; for (let k = 1; s.length + k < n; k++) s += '`'.repeat(k) + 'a';
                                  return s.padEnd(n, 'a'); },  // runs of 1, 2, 3... backticks: none closes
            'nested emphasis': (n) => '*a '.repeat(n / 6) + 'a*'.repeat(n / 4),
            staircase: (n) => { let s = ''; for (let k = 0; s.length < n; k++) s += ' '.repeat(k % 40) + '- a\\n';
                                return s.slice(0, n); },
        };
        const steps = (text) => md.renderMarkdown(text, document.createElement('div')).steps;
        const out = {};
        for (const [name, prefix, unit] of patterns) generated[name] = (n) => make(prefix, unit, n);
        for (const [name, gen] of Object.entries(generated)) {
            out[name] = [1000, 2000, 4000, 8000].map((n) => steps(gen(n)));
            const t0 = performance.now();
            steps(gen(8000));
            out[name].push(performance.now() - t0);
        }
        const ticks = 'x ' + '`'.repeat(5000);
        const times = [0, 1, 2].map(() => {
            const t0 = performance.now();
            steps(ticks);
            return performance.now() - t0;
        });
        out.ticks5000ms = Math.min(...times);
        return out;
    }""", [[name, "" if name in BLOCK_LEVEL else "x ", unit] for name, unit in PATTERNS.items()])
    assert figures.pop("ticks5000ms") < 100
    for name, (s1, s2, s4, s8, ms8) in figures.items():
        assert s1 < s2 < s4 < s8, (name, s1, s2, s4, s8)
        assert s8 / s1 <= 9, (name, s1, s8)
        assert ms8 < 200, (name, ms8)


def test_deep_nesting_is_bounded(page: Any) -> None:
    depths = page.evaluate("""() => {
        const depth = (el) => { let max = 0; const walk = (e, d) => { max = Math.max(max, d);
            for (const c of e.children) walk(c, d + 1); }; walk(el, 0); return max; };
        const docs = ['>'.repeat(2000) + ' x', '1. '.repeat(2000) + 'x', '*a '.repeat(2000) + 'x' + ' a*'.repeat(2000),
                      '~~a **b '.repeat(500) + 'x' + '** c~~'.repeat(500), '[a '.repeat(2000) + 'x' + '](https://a.b)'];
        const many = render('# h\\n- i\\n\\n'.repeat(40000));
        return [...docs.map((doc) => { const d = render(doc); return [depth(d), d.textContent.includes('x')]; }),
                [many.childElementCount, true]];
    }""")
    *nested, (blocks, _) = depths
    for depth, has_x in nested:
        assert depth <= 30 and has_x, depths
    assert blocks == 80000


# ----------------------------------------------------------------------------------------------- CommonMark-like

@pytest.mark.parametrize(("src", "want"), [
    ("`a`", p("<code>a</code>")),
    ("`` a`b ``", p("<code>a`b</code>")),
    ("`a``b`", p("<code>a``b</code>")),
    ("``a`", p("``a`")),
    ("```foo``", p("```foo``")),
    ("`` ` ``", p("<code>`</code>")),
    ("\\`a`", p("`a`")),
    ("`<b>&amp;</b>`", p("<code>&lt;b&gt;&amp;amp;&lt;/b&gt;</code>")),
    ("`a\nb`", p("<code>a b</code>")),
    ("`[x](https://a.com)`", p("<code>[x](https://a.com)</code>")),
])
def test_code_spans(page: Any, src: str, want: str) -> None:
    assert html(page, src) == want


@pytest.mark.parametrize(("src", "want"), [
    ("*a* _b_ **c** __d__", p("<em>a</em> <em>b</em> <strong>c</strong> <strong>d</strong>")),
    ("***e***", p("<em><strong>e</strong></em>")),
    ("**bold *nested* bold**", p("<strong>bold <em>nested</em> bold</strong>")),
    ("**a*", p("*<em>a</em>")),
    ("snake_case_name and 2 * 3 * 4", p("snake_case_name and 2 * 3 * 4")),
    ("\\*not\\*", p("*not*")),
    ("~~gone~~ ~one~ ~~~three~~~", p("<del>gone</del> ~one~ ~~~three~~~")),
    ("~~**both**~~", p("<del><strong>both</strong></del>")),
    ("*a\nb*", p("<em>a<br>b</em>")),
    ("line one\nline two", p("line one<br>line two")),
])
def test_emphasis_and_strikethrough(page: Any, src: str, want: str) -> None:
    assert html(page, src) == want


def test_headings_rules_and_quotes(page: Any) -> None:
    got = html(page, "# A\n## B\n### C\n#### D\n###### F #\n#no\n\n---\n\n> q\n> > nested\n>\n> - item")
    assert got == ("<h3>A</h3><h4>B</h4><h5>C</h5><h6>D</h6><h6>F</h6><p>#no</p><hr>"
                   "<blockquote><p>q</p><blockquote><p>nested</p></blockquote><ul><li>item</li></ul></blockquote>")


@pytest.mark.parametrize("src", [
    "- a\n  1. b\n     - c\n  2. d\n- e",
    "- a\n    1. b\n        - c\n    2. d\n- e",
    "* a\n  1) b\n    + c\n  2) d\n* e",
])
def test_nested_lists(page: Any, src: str) -> None:
    assert html(page, src) == "<ul><li>a<ol><li>b<ul><li>c</li></ul></li><li>d</li></ol></li><li>e</li></ul>"


def test_list_details(page: Any) -> None:
    assert html(page, "3. x\n4. y") == '<ol start="3"><li>x</li><li>y</li></ol>'
    assert html(page, "1. a\n   - b\n2. c") == "<ol><li>a<ul><li>b</li></ul></li><li>c</li></ol>"
    assert html(page, "- a\n\n- b") == "<ul><li><p>a</p></li><li><p>b</p></li></ul>"
    assert html(page, "- a\n- b\n+ c") == "<ul><li>a</li><li>b</li></ul><ul><li>c</li></ul>"
    assert html(page, "Steps:\n1. one\n2. two\n\nDone.") == "<p>Steps:</p><ol><li>one</li><li>two</li></ol><p>Done.</p>"
    assert html(page, "- code:\n\n  ```py\n  x = 1\n  ```") == (
        '<ul><li><p>code:</p><div class="code-block"><div class="code-head"><span>py</span><button type="button" '
        'class="btn btn-small copy" aria-label="Copy py code">Copy</button></div><pre><code data-lang="py">x = '
        '<span class="tok-number">1</span></code></pre></div></li></ul>')


def test_tables(page: Any) -> None:
    got = html(page, "Table:\n| Left | Center | Right | None |\n|:-----|:------:|------:|------|\n"
                     "| *a* | `b \\| c` | [l](https://x.org) |\nd | e | f | g | extra\n\nafter")
    assert got == (
        '<p>Table:</p><table class="md-table"><thead><tr><th class="align-left">Left</th>'
        '<th class="align-center">Center</th><th class="align-right">Right</th><th>None</th></tr></thead><tbody>'
        '<tr><td class="align-left"><em>a</em></td><td class="align-center"><code>b | c</code></td>'
        f'<td class="align-right">{link("https://x.org/", "l")}<span class="link-host"> (x.org)</span></td>'
        '<td></td></tr>'
        '<tr><td class="align-left">d</td><td class="align-center">e</td><td class="align-right">f</td><td>g</td>'
        '</tr></tbody></table><p>after</p>')
    assert html(page, "a | b\n--- | ---") == (
        '<table class="md-table"><thead><tr><th>a</th><th>b</th></tr></thead></table>')
    assert html(page, "a | b\n--- | --- | ---") == p("a | b<br>--- | --- | ---")  # cell counts differ


def test_images_are_links_never_loaded(page: Any) -> None:
    got = html(page, "![a cat](https://cats.example/c.png) ![x](javascript:alert(1)) "
                     "[![badge](https://ci.example/b.svg)](https://ci.example/run)")
    assert got == p(
        f'{link("https://cats.example/c.png", "🖼 a cat")}<span class="link-host"> (cats.example)</span> '
        "🖼 x (javascript:alert(1)) "
        f'{link("https://ci.example/run", "🖼 badge")}<span class="link-host"> (ci.example)</span>')
    assert "<img" not in got


def test_fences(page: Any) -> None:
    doc = page.evaluate("""() => {
        const d = render('```js\\nlet a = `x\\ny`;\\n```\\n\\n~~~\\n```\\nnot closed by backticks\\n~~~\\n\\n'
                         + '````\\n```\\n````\\n\\n```python\\nprint(1)\\n');
        return [...d.querySelectorAll('.code-block')].map((b) => [b.querySelector('.code-head span').textContent,
            b.querySelector('code').textContent, b.querySelector('code').dataset.lang ?? null]);
    }""")
    assert doc == [["js", "let a = `x\ny`;", "js"], ["code", "```\nnot closed by backticks", None],
                   ["code", "```", None], ["python", "print(1)", "python"]]


HIGHLIGHT_SRC = ('```python\ndef f(x=1.5):\n    """doc"""\n    return "a#b"  # note\n```\n\n'
                 "```js\nconst s = `t${1}`; /* c */ let n = 0x1f; // end\nif (a) return 'q';\n```")


def test_highlighter(page: Any) -> None:
    spans = page.evaluate("""(src) => [...render(src).querySelectorAll('code')].map((c) => [c.textContent,
        [...c.querySelectorAll('span')].map((s) => [s.className, s.textContent])])""", HIGHLIGHT_SRC)
    (py_text, py), (js_text, js) = spans
    assert py_text == 'def f(x=1.5):\n    """doc"""\n    return "a#b"  # note'
    assert py == [["tok-keyword", "def"], ["tok-number", "1.5"], ["tok-string", '"""doc"""'],
                  ["tok-keyword", "return"], ["tok-string", '"a#b"'], ["tok-comment", "# note"]]
    assert js_text.startswith("const s")
    assert js == [["tok-keyword", "const"], ["tok-string", "`t${1}`"], ["tok-comment", "/* c */"],
                  ["tok-keyword", "let"], ["tok-number", "0x1f"], ["tok-comment", "// end"], ["tok-keyword", "if"],
                  ["tok-keyword", "return"], ["tok-string", "'q'"]]


# ------------------------------------------------------------------------------------------------------ safety

PAYLOADS = [
    '# Title\n<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>\n'
    "**bold** [x](javascript:alert(1)) [ok](https://example.com)\n\n```python\nprint(\"<b>hi</b>\")\n```",
    "<script>window.pwned=3</script>",
    '<img src=x onerror="window.pwned=4">',
    '<a href="javascript:window.pwned=5">x</a> <iframe src="https://evil.example"></iframe> <style>*{}</style>',
    "[a](javascript:window.pwned=6) [b](JaVaScRiPt:window.pwned=7) [c]( javascript:alert(1) )",
    "[d](&#106;avascript:alert(1)) [e](javascript&colon;alert(1)) [f](%6Aavascript:alert(1))",
    "[g](<javascript:alert(1)>) <javascript:alert(1)> [h](\tjavascript:alert(1))",
    "[i](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) [j](vbscript:msgbox(1)) [k](VBScript:x)",
    "[l](//evil.example/x) [m](/relative) [n](file:///etc/passwd) [o](ftp://x.example) [p](http:evil)",
    "![q](javascript:alert(1)) ![r](data:image/svg+xml,<svg onload=alert(1)>)",
    '[s](https://ok.example "t" onmouseover="window.pwned=8") [t](https://ok.example/"><script>alert(1)</script>)',
    'https://evil.example/"onmouseover="alert(1) <https://x.example/<script>>',
    "| <img src=x onerror=alert(1)> | b |\n|---|---|\n| <svg onload=alert(1)> | [u](javascript:alert(1)) |",
    "> <script>alert(1)</script>\n\n- <b onclick=alert(1)>x</b>\n\n```html\n<script>window.pwned=9</script>\n```",
    "[v](\u202ejavascript:alert(1)) [w](java\u200bscript:alert(1)) [x](\x00javascript:alert(1))",
]


@pytest.mark.parametrize("src", PAYLOADS)
def test_no_markup_reaches_the_page(page: Any, src: str) -> None:
    result = page.evaluate("""(src) => {
        const d = render(src);
        document.body.append(d);  // attached, so that anything active would run
        const els = [...d.querySelectorAll('*')];
        const out = { tags: els.map((e) => e.tagName.toLowerCase()),
                      attrs: els.flatMap((e) => e.getAttributeNames()),
                      hrefs: [...d.querySelectorAll('a')].map((a) => [a.getAttribute('href'), a.target, a.rel]),
                      text: d.textContent };
        d.remove();
        return out;
    }""", src)
    assert set(result["tags"]) <= TAGS, result["tags"]
    assert set(result["attrs"]) <= ATTRS, result["attrs"]
    assert not [a for a in result["attrs"] if a.startswith("on")]
    for href, target, rel in result["hrefs"]:
        assert href.startswith(("https://", "http://", "mailto:")), href
        assert target == "_blank" and rel == "noopener noreferrer nofollow"
    assert page.evaluate("window.pwned === undefined")
    assert not set(result["text"]) & set(BIDI)


def test_first_payload_as_before(page: Any) -> None:
    result = page.evaluate("""(src) => { const d = render(src);
        return { links: [...d.querySelectorAll('a')].map((a) => a.href), text: d.textContent,
                 code: d.querySelector('pre code').textContent, copy: !!d.querySelector('button.copy'),
                 tags: [...d.querySelectorAll('*')].map((e) => e.tagName.toLowerCase()) }; }""", PAYLOADS[0])
    assert {"h3", "strong", "pre", "code"} <= set(result["tags"])
    assert result["links"] == ["https://example.com/"]
    assert '<img src=x onerror="window.pwned=1">' in result["text"]
    assert "x (javascript:alert(1))" in result["text"]
    assert result["code"] == 'print("<b>hi</b>")' and result["copy"]


def test_link_targets_are_shown(page: Any) -> None:
    assert html(page, "[docs](https://example.com/a/b?c=1)") == p(
        link("https://example.com/a/b?c=1", "docs") + '<span class="link-host"> (example.com)</span>')
    assert html(page, "[https://bank.com](https://evil.com)") == p(
        link("https://evil.com/", "https://bank.com") + f'<span class="{MISMATCH}"> (⚠ evil.com)</span>')
    assert html(page, "[www.bank.com/login](https://evil.com/bank.com)").endswith(
        f'<span class="{MISMATCH}"> (⚠ evil.com)</span></p>')
    assert html(page, "[bank.com](https://bank.com/)") == p(link("https://bank.com/", "bank.com"))
    assert html(page, "[main.py](https://github.com/x/main.py)").endswith(
        '<span class="link-host"> (github.com)</span></p>')
    assert html(page, "see https://example.com/x_(y)). and <https://example.com>") == p(
        f'see {link("https://example.com/x_(y)", "https://example.com/x_(y)")}). and '
        f'{link("https://example.com/", "https://example.com")}')
    idn = html(page, "https://b\u0430nk.com/login and [b\u0430nk.com](https://b\u0430nk.com)")
    assert idn.count('<span class="link-host"> (xn--bnk-') == 2
    assert html(page, "[mail me](mailto:me@example.com)") == p(
        link("mailto:me@example.com", "mail me") + '<span class="link-host"> (me@example.com)</span>')


def test_bidi_controls_are_neutralised(page: Any) -> None:
    result = page.evaluate("""() => {
        const d = render('invoice\\u202Efdp.exe and \\u2066iso\\u2069 \\u200Fmark\\u061C\\n\\n'
                         + '[safe\\u202Etxt.exe](https://files.example/x)\\n\\n```\\na\\u202Eb\\n```');
        return { text: d.textContent, link: d.querySelector('a').textContent,
                 code: d.querySelector('code').textContent };
    }""")
    for text in result.values():
        assert not set(text) & set(BIDI)
    assert "invoice\ufffdfdp.exe and \ufffdiso\ufffd mark" in result["text"]
    assert result["link"] == "safe\ufffdtxt.exe" and result["code"] == "a\ufffdb"


# --------------------------------------------------------------------------------------------------- streaming

DOCS = [
    "# Plan\n\nSome *text* with `code` and a [link](https://example.com).\n\n- one\n- two\n  1. nested\n  2. more\n"
    "- three\n\n| a | b |\n|:-|-:|\n| 1 | 2 |\n| 3 | 4 |\n\n```python\ndef f():\n    return 1\n```\n\n> quote\n"
    "> more\n\n---\n\n![img](https://x.example/i.png) done.",
    "Intro line\n```js\nconst a = 1;\nconsole.log(a);\n",
    "- a\n- b\n\n- c\n\ntext after\n\n1. x\n\n   para in item\n2. y\n",
    "Here is a table:\n| h1 | h2 |\n|----|----|\n| c1 | c2 |\nrow without pipe\n\nafter **bold** text\n",
    "> - quoted list\n>   - nested\n> > deeper *quote*\n\nplain\n> again\n",
    "~~~md\n```\ninner fence\n```\n~~~\n\n````\n```\n````\n\nEnd ~~strike~~.",
    "CRLF doc\r\n\r\n- item one\r\n- item two\r\n\r\n# Heading\r\nText\r\nmore\r\n",
    "``` ``a`` ` `` ``` text *em **strong*** _u_\n" * 3 + "\n" + "`" * 50 + "\n",
    "RTL \u202eevil\u202c and link [a\u202eb](https://ex.example) and https://plain.example/path.\n\nok",
    "1. First\n   ```sh\n   echo hi # c\n   ```\n2. Second\n\n   With paragraph.\n\n3. Third",
    "\n\n\nshort\nlines\n\n\n\nwith   \ntrailing  \n\n#\n##  \n-\n\n",
    "Title\n---\npara | with | pipes\nnot a table\n\na|b\n-|-\n\n# H1 #\nText *a\n\nb* c",
]


def test_stream_matches_full_render_at_every_step(page: Any) -> None:
    bad = page.evaluate("""(docs) => {
        const bad = [];
        docs.forEach((doc, k) => {
            for (let trial = 0; trial < 3; trial++) {
                let seed = 7919 * (k + 1) + trial;
                const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
                const div = document.createElement('div');
                const stream = new md.MarkdownStream(div);
                for (let pos = 0; pos < doc.length;) {
                    pos = Math.min(doc.length, pos + 1 + Math.floor(rnd() * [2, 8, 60][trial]));
                    stream.update(doc.slice(0, pos));
                    const want = render(doc.slice(0, pos)).innerHTML;
                    if (div.innerHTML !== want) { bad.push({ k, trial, pos, got: div.innerHTML, want }); return; }
                }
                stream.finish();
            }
        });
        return bad;
    }""", DOCS)
    assert bad == []


PIECES = ["- ", "* ", "1. ", "2) ", "  ", "    ", "> ", "# ", "```", "~~~", "```py", "|", " | ", "---", ":-:", "\n",
          "\n", "\n\n", "\r\n", "\r", "word", "text ", "*", "**", "_", "~~", "`", "``", "[", "]", "(", ")", "![",
          "https://a.com/x", "<https://b.org>", "\\", "\t", "a|b", "-|-", "\u202e"]


def test_stream_matches_full_render_on_random_documents(page: Any) -> None:
    bad = page.evaluate("""(pieces) => {
        let seed = 2024;
        const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
        for (let d = 0; d < 150; d++) {
            let doc = '';
            for (let k = 5 + Math.floor(rnd() * 60); k > 0; k--) doc += pieces[Math.floor(rnd() * pieces.length)];
            const div = document.createElement('div');
            const stream = new md.MarkdownStream(div);
            for (let pos = 0; pos < doc.length;) {
                pos = Math.min(doc.length, pos + 1 + Math.floor(rnd() * 5));
                stream.update(doc.slice(0, pos));
                if (div.innerHTML !== render(doc.slice(0, pos)).innerHTML) return doc.slice(0, pos);
            }
        }
        return null;
    }""", PIECES)
    assert bad is None


def test_stream_keeps_completed_blocks(page: Any) -> None:
    blocks = ["# Title", "A paragraph\nover two lines.", "- a\n- b\n  - c", "| x | y |\n|---|---|\n| 1 | 2 |",
              "```py\nx = 1\n```", "> quoted", "---", "1. one\n2. two", "Last paragraph."]
    result = page.evaluate("""(blocks) => {
        const doc = blocks.join('\\n\\n') + '\\n';
        // block k is final once the first line of block k + 1 is complete
        const ready = blocks.slice(0, -1).map((_, k) => blocks.slice(0, k + 2).join('\\n\\n').length
            - blocks[k + 1].length + blocks[k + 1].split('\\n')[0].length + 1);
        const div = document.createElement('div');
        const stream = new md.MarkdownStream(div);
        const seen = [];
        const observer = new MutationObserver(() => {});
        observer.observe(div, { childList: true });
        let seed = 42;
        const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
        for (let pos = 0; pos < doc.length;) {
            pos = Math.min(doc.length, pos + 1 + Math.floor(rnd() * 6));
            stream.update(doc.slice(0, pos));
            ready.forEach((at, k) => { if (pos >= at && !seen[k]) seen[k] = div.children[k]; });
        }
        const lastSteps = stream.update(doc + 'more').steps;  // one more token: only the last paragraph is redone
        const total = stream.finish().steps;
        const removed = new Set(observer.takeRecords().flatMap((r) => [...r.removedNodes]));
        return { count: seen.filter(Boolean).length, kept: seen.every((n, k) => n === div.children[k]),
                 removedKept: seen.some((n) => removed.has(n)), children: div.children.length,
                 same: div.innerHTML === render(doc + 'more').innerHTML, lastSteps, total,
                 fullSteps: md.renderMarkdown(doc, document.createElement('div')).steps };
    }""", blocks)
    assert result["count"] == len(blocks) - 1 and result["children"] == len(blocks)
    assert result["kept"] and not result["removedKept"] and result["same"]
    assert result["lastSteps"] * 5 < result["fullSteps"], result  # only the tail is parsed again


def test_stream_starts_over_on_a_different_text(page: Any) -> None:
    same = page.evaluate("""() => {
        const div = document.createElement('div');
        const stream = new md.MarkdownStream(div);
        stream.update('# One\\n\\nfirst\\n\\nsecond');
        stream.update('Other text\\n\\n- x');
        return div.innerHTML === render('Other text\\n\\n- x').innerHTML;
    }""")
    assert same
