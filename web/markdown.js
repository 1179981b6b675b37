// Safe Markdown for model output: the text is parsed by us and turned into DOM nodes with textContent only,
// so no HTML or script from a reply can ever reach the page.  Covers what chat replies use: paragraphs, line
// breaks, headings, lists, block quotes, rules, fenced code (with a copy button), inline code, bold, italics
// and http(s)/mailto links.  Unclosed fences render as code so that streaming text looks right.

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)\s*$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
const ORDERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
const INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*(?=\S)([\s\S]*?\S)\*\*|__(?=\S)([\s\S]*?\S)__|\*(?=[^\s*])([^*]*?[^\s*])\*|\[([^\]\n]+)\]\(([^()\s]+)\)|(https?:\/\/[^\s<>()"']*[^\s<>()"'.,;:!?])/g;

/** Replace ``container``'s children with the rendering of ``text`` (a Markdown string). */
export function renderMarkdown(text, container) {
  const doc = container.ownerDocument;
  container.replaceChildren(...blocks(String(text).replace(/\r\n?/g, "\n").split("\n"), doc));
}

function blocks(lines, doc) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) { i++; continue; }
    if ((m = FENCE.exec(line))) {
      const fence = m[1];
      const body = [];
      i++;
      while (i < lines.length && !(lines[i].trim().startsWith(fence[0].repeat(fence.length)) && !lines[i].trim().slice(fence.length).trim())) {
        body.push(lines[i++]);
      }
      i++; // the closing fence (or past the end)
      out.push(codeBlock(body.join("\n"), m[2], doc));
    } else if ((m = HEADING.exec(line))) {
      const h = doc.createElement(`h${Math.min(m[1].length + 2, 6)}`); // h1/h2 belong to the page
      inline(m[2], h, doc);
      out.push(h);
      i++;
    } else if (RULE.test(line)) {
      out.push(doc.createElement("hr"));
      i++;
    } else if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && (m = QUOTE.exec(lines[i]))) { body.push(m[1]); i++; }
      const q = doc.createElement("blockquote");
      q.append(...blocks(body, doc));
      out.push(q);
    } else if (BULLET.test(line) || ORDERED.test(line)) {
      const ordered = !BULLET.test(line);
      const re = ordered ? ORDERED : BULLET;
      const list = doc.createElement(ordered ? "ol" : "ul");
      if (ordered) {
        const start = Number(ORDERED.exec(line)[1]);
        if (start !== 1) list.start = start;
      }
      let item = null;
      while (i < lines.length) {
        const l = lines[i];
        if ((m = re.exec(l))) {
          item = doc.createElement("li");
          inline(ordered ? m[2] : m[1], item, doc);
          list.append(item);
        } else if (l.trim() && /^\s+/.test(l) && item) {
          item.append(doc.createElement("br"));
          inline(l.trim(), item, doc);
        } else {
          break;
        }
        i++;
      }
      out.push(list);
    } else {
      const para = [];
      while (i < lines.length && lines[i].trim() && !FENCE.test(lines[i]) && !HEADING.test(lines[i]) &&
             !QUOTE.test(lines[i]) && !BULLET.test(lines[i]) && !ORDERED.test(lines[i]) && !RULE.test(lines[i])) {
        para.push(lines[i++]);
      }
      const p = doc.createElement("p");
      para.forEach((l, k) => {
        if (k) p.append(doc.createElement("br"));
        inline(l, p, doc);
      });
      out.push(p);
    }
  }
  return out;
}

function codeBlock(code, lang, doc) {
  const wrap = doc.createElement("div");
  wrap.className = "code-block";
  const head = doc.createElement("div");
  head.className = "code-head";
  const label = doc.createElement("span");
  label.textContent = lang || "code";
  const copy = doc.createElement("button");
  copy.type = "button";
  copy.className = "btn btn-small copy";
  copy.textContent = "Copy";
  copy.setAttribute("aria-label", `Copy ${lang || ""} code`.replace("  ", " "));
  copy.addEventListener("click", () => copyText(code, copy));
  head.append(label, copy);
  const pre = doc.createElement("pre");
  const el = doc.createElement("code");
  if (lang) el.dataset.lang = lang;
  el.textContent = code;
  pre.append(el);
  wrap.append(head, pre);
  return wrap;
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed";
  }
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

function inline(text, parent, doc) {
  let last = 0;
  INLINE.lastIndex = 0;
  for (let m; (m = INLINE.exec(text));) {
    if (m.index > last) parent.append(text.slice(last, m.index));
    last = INLINE.lastIndex;
    if (m[1]) {
      const c = doc.createElement("code");
      c.textContent = m[2].length > 2 && m[2].startsWith(" ") && m[2].endsWith(" ") ? m[2].slice(1, -1) : m[2];
      parent.append(c);
    } else if (m[3] !== undefined || m[4] !== undefined) {
      const b = doc.createElement("strong");
      inline(m[3] ?? m[4], b, doc);
      parent.append(b);
    } else if (m[5] !== undefined) {
      const e = doc.createElement("em");
      inline(m[5], e, doc);
      parent.append(e);
    } else if (m[6] !== undefined) {
      parent.append(link(m[7], m[6], doc));
    } else {
      parent.append(link(m[8], m[8], doc));
    }
    INLINE.lastIndex = last; // nested calls reuse the regex
  }
  if (last < text.length) parent.append(text.slice(last));
}

/** A link only for http(s) and mailto URLs; anything else (javascript:, data:...) stays plain text. */
function link(href, label, doc) {
  let url = null;
  try {
    url = new URL(href, "https://invalid.example/");
  } catch { /* not a URL */ }
  if (!url || !/^(https?|mailto):$/.test(url.protocol) || url.host === "invalid.example") {
    return doc.createTextNode(label === href ? href : `${label} (${href})`);
  }
  const a = doc.createElement("a");
  a.href = url.href;
  a.textContent = label;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  return a;
}
