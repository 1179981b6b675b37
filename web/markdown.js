// Safe, linear-time Markdown for model output.  The text is parsed by hand-written scanners (no backtracking
// regular expressions) and turned into DOM nodes with textContent only, so no HTML or script from a reply can
// reach the page.  Every stage is O(n) in the text, pathological inputs included (runs of thousands of
// backticks, `*`, `[`...): code spans find their closer through an index of backtick runs by length, emphasis
// uses CommonMark's delimiter stack with per-kind floors, link destinations are read through precomputed tables,
// and quotes/lists/emphasis deeper than a fixed limit are read as text.
//
// Blocks: paragraphs (each line break kept), ATX headings (h1/h2 become h3/h4: the page owns those), rules,
// block quotes, fenced code (``` and ~~~; an unclosed fence renders as code so streaming looks right) with a
// small highlighter, nested lists (by indentation, bullets and ordered, mixed), GFM tables.  Inline: code spans,
// emphasis, strong, ~~strikethrough~~, links, <autolinks>, bare http(s) URLs, and images, which are never
// loaded: they become a link "🖼 alt".  Only http(s) and mailto URLs become links; a link whose text is not its
// URL shows the target's host after it, flagged when the text itself names another host.  Bidi controls are
// neutralised in one pass: overrides/embeddings/isolates become U+FFFD, the invisible marks are dropped.
// Not supported: raw HTML (shown as text), entities, reference links, setext headings, indented code blocks.

const MAX_BLOCK_DEPTH = 12; // quotes/lists nested deeper are read as text
const MAX_INLINE_DEPTH = 24; // emphasis nested deeper renders without further wrappers
const SAFE_SCHEME = /^(?:https?:\/\/|mailto:)/i;
const PUNCT = /^[\p{P}\p{S}]$/u;
const SPACE = /^\s$/u;
const ASCII_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
const URL_TRIM = ".,:;!?*_~'\"";
const IMAGE_MARK = "🖼 ";
const COMMON_TLDS = new Set("com net org io dev app ai co edu gov info me uk de fr eu us ca au jp cn ru in br"
  .split(" "));

/** Replace ``container``'s children with the rendering of ``text``; returns ``{ steps }``, the work done. */
export function renderMarkdown(text, container) {
  const ctx = { doc: container.ownerDocument, steps: 0 };
  const src = splitLines(String(text ?? ""), ctx);
  container.replaceChildren(fragment(ctx.doc, parseBlocks(src.lines, ctx, 0).map((b) => renderBlock(b, ctx))));
  return { steps: ctx.steps };
}

// Streaming: ``const stream = new MarkdownStream(el)``, then ``stream.update(reply.content)`` on each painted frame
// and ``stream.finish()`` at the end.  After any update the container's DOM equals renderMarkdown's for that text,
// but top-level blocks that can no longer change are kept as they are and only the text after them is parsed again.

/** Incremental rendering of a growing text: completed top-level blocks keep their DOM nodes, the tail is redone. */
export class MarkdownStream {
  #container;
  #prefix = ""; // the committed raw text: its blocks are final
  #tail = []; // DOM nodes of the blocks after it, redone on each update
  #steps = 0;

  /** Render into ``container`` (its children are replaced). */
  constructor(container) {
    this.#container = container;
    container.replaceChildren();
  }

  /** Show ``fullText`` (the whole reply so far); returns ``{ steps }`` for this update. */
  update(fullText) {
    const text = String(fullText ?? "");
    if (!text.startsWith(this.#prefix)) { // not an extension of what was shown: start over
      this.#prefix = "";
      this.#tail = [];
      this.#container.replaceChildren();
    }
    const ctx = { doc: this.#container.ownerDocument, steps: 0 };
    const src = splitLines(text.slice(this.#prefix.length), ctx);
    const blocks = parseBlocks(src.lines, ctx, 0);
    const nodes = blocks.map((b) => renderBlock(b, ctx));
    for (const node of this.#tail) node.remove();
    this.#container.append(fragment(ctx.doc, nodes));
    let done = 0; // blocks whose every deciding line is complete cannot change any more
    while (done < blocks.length && blocks[done].look < src.complete) done++;
    if (done) this.#prefix = text.slice(0, this.#prefix.length + src.starts[blocks[done - 1].end]);
    this.#tail = nodes.slice(done);
    this.#steps += ctx.steps;
    return { steps: ctx.steps };
  }

  /** The text is complete (the last update showed all of it); returns ``{ steps }`` for the whole stream. */
  finish() {
    return { steps: this.#steps };
  }
}

/** ``nodes`` in a DocumentFragment (appending them one by one: a spread of thousands of arguments could overflow). */
function fragment(doc, nodes) {
  const frag = doc.createDocumentFragment();
  for (const node of nodes) frag.appendChild(node);
  return frag;
}

// ---------------------------------------------------------------------------------------------------- lines

/** Lines of ``text`` (\n, \r\n, \r), bidi controls neutralised; ``starts``: raw offsets; ``complete``: lines known. */
function splitLines(text, ctx) {
  const lines = [];
  const starts = [0];
  let line = "";
  let seg = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 13 && c < 0x61c) continue;
    if (c === 10 || c === 13) {
      lines.push(line + text.slice(seg, i));
      if (c === 13 && text.charCodeAt(i + 1) === 10) i++;
      line = "";
      seg = i + 1;
      starts.push(seg);
    } else if (c === 0 || isBidi(c)) {
      line += text.slice(seg, i) + (c === 0x200e || c === 0x200f || c === 0x61c ? "" : "\ufffd");
      seg = i + 1;
    }
  }
  lines.push(line + text.slice(seg));
  ctx.steps += text.length + lines.length;
  // The last line is partial; a final "\r" may still become "\r\n", so the line before it is not complete either.
  const complete = lines.length - (text.endsWith("\r") ? 2 : 1);
  return { lines, starts, complete };
}

function isBidi(c) {
  return (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) || c === 0x200e || c === 0x200f || c === 0x61c;
}

function isBlank(line) {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c !== 32 && c !== 9) return false;
  }
  return true;
}

/** Leading whitespace: ``cols`` (tabs to multiples of 4) and ``chars``. */
function indent(line) {
  let cols = 0;
  let i = 0;
  for (; i < line.length; i++) {
    if (line[i] === " ") cols++;
    else if (line[i] === "\t") cols += 4 - (cols % 4);
    else break;
  }
  return { cols, chars: i };
}

/** ``line`` without its first ``n`` columns of indentation (a tab split in two leaves spaces). */
function dropCols(line, n) {
  let cols = 0;
  let i = 0;
  while (i < line.length && cols < n) {
    if (line[i] === " ") cols++;
    else if (line[i] === "\t") {
      const w = 4 - (cols % 4);
      if (cols + w > n) return " ".repeat(cols + w - n) + line.slice(i + 1);
      cols += w;
    } else break;
    i++;
  }
  return line.slice(i);
}

// --------------------------------------------------------------------------------------------------- blocks
// A block is { t, ..., start, end, look }: lines [start, end) and ``look``, the last line that decided its extent
// (lines.length when the end of the text did).  Parsing resumes at ``end`` with no state carried over, so a block
// whose ``look`` line is complete is final, and the text after it can be parsed on its own (MarkdownStream).

function parseBlocks(lines, ctx, depth) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    ctx.steps++;
    if (isBlank(lines[i])) { i++; continue; }
    const block = parseBlock(lines, i, ctx, depth);
    block.start = i;
    out.push(block);
    i = block.end;
  }
  return out;
}

function parseBlock(lines, i, ctx, depth) {
  const line = lines[i];
  ctx.steps += line.length;
  const fence = fenceOpen(line);
  if (fence) return parseFence(lines, i, fence, ctx);
  const h = heading(line);
  if (h) return { t: "h", level: h.level, text: h.text, end: i + 1, look: i };
  if (isRule(line)) return { t: "hr", end: i + 1, look: i };
  if (depth < MAX_BLOCK_DEPTH && quoteBody(line) !== null) return parseQuote(lines, i, ctx, depth);
  if (depth < MAX_BLOCK_DEPTH && listMarker(line)) return parseList(lines, i, ctx, depth);
  const table = tableStart(lines, i);
  if (table) return parseTable(lines, i, table, ctx, depth);
  return parseParagraph(lines, i, ctx, depth);
}

/** Whether ``line`` starts another block, ending a paragraph or table. */
function interrupts(line, depth) {
  if (fenceOpen(line) || heading(line) || isRule(line)) return true;
  if (depth >= MAX_BLOCK_DEPTH) return false;
  if (quoteBody(line) !== null) return true;
  const item = listMarker(line);
  return Boolean(item && item.content); // an empty item cannot interrupt a paragraph
}

function fenceOpen(line) {
  const ind = indent(line);
  const ch = line[ind.chars];
  if (ind.cols > 3 || (ch !== "`" && ch !== "~")) return null;
  let e = ind.chars;
  while (line[e] === ch) e++;
  if (e - ind.chars < 3) return null;
  const info = line.slice(e).trim();
  if (ch === "`" && info.includes("`")) return null;
  let w = 0;
  while (w < info.length && w < 40 && info[w] !== " " && info[w] !== "\t") w++;
  return { ch, len: e - ind.chars, indent: ind.cols, lang: info.slice(0, w) };
}

function fenceCloses(line, fence) {
  const ind = indent(line);
  if (ind.cols > 3) return false;
  let e = ind.chars;
  while (line[e] === fence.ch) e++;
  return e - ind.chars >= fence.len && isBlank(line.slice(e));
}

function parseFence(lines, i, fence, ctx) {
  const body = [];
  let j = i + 1;
  for (; j < lines.length; j++) {
    ctx.steps += lines[j].length + 1;
    if (fenceCloses(lines[j], fence)) break;
    body.push(dropCols(lines[j], fence.indent));
  }
  const closed = j < lines.length;
  if (!closed && body.length && !body[body.length - 1]) body.pop(); // the partial last line of a streamed fence
  return { t: "code", lang: fence.lang, code: body.join("\n"), end: closed ? j + 1 : j, look: j };
}

function heading(line) {
  const ind = indent(line);
  if (ind.cols > 3) return null;
  let e = ind.chars;
  while (line[e] === "#" && e - ind.chars < 7) e++;
  const level = e - ind.chars;
  if (level < 1 || level > 6 || (e < line.length && line[e] !== " " && line[e] !== "\t")) return null;
  let text = line.slice(e).trim();
  let k = text.length;
  while (k > 0 && text[k - 1] === "#") k--;
  if (k === 0) text = "";
  else if (k < text.length && (text[k - 1] === " " || text[k - 1] === "\t")) text = text.slice(0, k).trimEnd();
  return { level, text };
}

function isRule(line) {
  const ind = indent(line);
  const ch = line[ind.chars];
  if (ind.cols > 3 || (ch !== "-" && ch !== "*" && ch !== "_")) return false;
  let n = 0;
  for (let i = ind.chars; i < line.length; i++) {
    if (line[i] === ch) n++;
    else if (line[i] !== " " && line[i] !== "\t") return false;
  }
  return n >= 3;
}

function quoteBody(line) {
  const ind = indent(line);
  if (ind.cols > 3 || line[ind.chars] !== ">") return null;
  const p = ind.chars + 1;
  return line.slice(line[p] === " " || line[p] === "\t" ? p + 1 : p);
}

function parseQuote(lines, i, ctx, depth) {
  const body = [];
  let j = i;
  for (; j < lines.length; j++) {
    const inner = quoteBody(lines[j]);
    if (inner === null) break;
    ctx.steps += lines[j].length + 1;
    body.push(inner);
  }
  return { t: "quote", kids: parseBlocks(body, ctx, depth + 1), end: j, look: j };
}

/** A list item's marker: ``indent`` (its column), ``width`` (the content's column) and the ``content``. */
function listMarker(line) {
  const ind = indent(line);
  let p = ind.chars;
  const c = line[p];
  let ordered = false;
  let start = 1;
  let mark = c;
  if (c === "-" || c === "*" || c === "+") p++;
  else {
    let q = p;
    while (q - p < 10 && line.charCodeAt(q) >= 48 && line.charCodeAt(q) <= 57) q++;
    if (q === p || q - p > 9 || (line[q] !== "." && line[q] !== ")")) return null;
    ordered = true;
    start = Number(line.slice(p, q));
    mark = line[q];
    p = q + 1;
  }
  if (p < line.length && line[p] !== " " && line[p] !== "\t") return null;
  let q = p;
  while (line[q] === " " || line[q] === "\t") q++;
  const markerEnd = ind.cols + (p - ind.chars);
  if (q >= line.length) return { ordered, mark, start, indent: ind.cols, width: markerEnd + 1, content: "" };
  if (q - p > 4) return { ordered, mark, start, indent: ind.cols, width: markerEnd + 1, content: line.slice(p + 1) };
  return { ordered, mark, start, indent: ind.cols, width: markerEnd + (q - p), content: line.slice(q) };
}

// An item holds the lines indented at least to its content column, or by 2 more than its marker, whichever is
// less (so "1. a" followed by "  - b" nests, as people mean it); a blank line inside or between items makes the
// list loose (<p> in items).  A line indented less ends the item; if it is not a marker of the same kind, the list.
function parseList(lines, i, ctx, depth) {
  const first = listMarker(lines[i]);
  const items = [];
  let loose = false;
  let m = first;
  let j = i;
  for (;;) {
    const base = Math.min(m.width, m.indent + 2);
    const body = [m.content];
    let k = j + 1;
    let last = j;
    for (; k < lines.length; k++) {
      const line = lines[k];
      ctx.steps += line.length + 1;
      if (isBlank(line)) continue;
      if (indent(line).cols < base) break;
      while (body.length < k - j) body.push("");
      body.push(dropCols(line, base));
      last = k;
    }
    const kids = parseBlocks(body, ctx, depth + 1);
    for (let b = 1; b < kids.length; b++) if (kids[b].start > kids[b - 1].end) loose = true;
    items.push(kids);
    const next = k < lines.length && !isRule(lines[k]) ? listMarker(lines[k]) : null;
    if (!next || next.ordered !== first.ordered || next.mark !== first.mark) {
      return { t: "list", ordered: first.ordered, number: first.start, loose, items, end: last + 1, look: k };
    }
    if (k > last + 1) loose = true;
    m = next;
    j = k;
  }
}

function splitRow(line) {
  const s = line.trim();
  let from = s[0] === "|" ? 1 : 0;
  let end = s.length;
  if (end > from && s[end - 1] === "|" && s[end - 2] !== "\\") end--;
  const cells = [];
  let cell = "";
  for (let k = from; k < end; k++) {
    if (s[k] === "\\" && s[k + 1] === "|") {
      cell += s.slice(from, k) + "|";
      from = ++k + 1;
    } else if (s[k] === "|") {
      cells.push((cell + s.slice(from, k)).trim());
      cell = "";
      from = k + 1;
    }
  }
  cells.push((cell + s.slice(from, end)).trim());
  return cells;
}

/** The alignments of a GFM delimiter row ("| :--- | :-: | --: |"), or null. */
function delimiterRow(line) {
  if (!line.includes("|")) return null;
  const aligns = [];
  for (const cell of splitRow(line)) {
    const left = cell[0] === ":";
    const right = cell.length > 1 && cell[cell.length - 1] === ":";
    const dashes = cell.slice(left ? 1 : 0, right ? -1 : undefined);
    if (!dashes) return null;
    for (let k = 0; k < dashes.length; k++) if (dashes[k] !== "-") return null;
    aligns.push(left && right ? "center" : right ? "right" : left ? "left" : "");
  }
  return aligns;
}

function tableStart(lines, i) {
  if (!lines[i].includes("|") || i + 1 >= lines.length || indent(lines[i]).cols > 3) return null;
  const aligns = delimiterRow(lines[i + 1]);
  if (!aligns) return null;
  const head = splitRow(lines[i]);
  return head.length === aligns.length ? { head, aligns } : null;
}

function parseTable(lines, i, table, ctx, depth) {
  const rows = [];
  let j = i + 2;
  for (; j < lines.length; j++) {
    ctx.steps += lines[j].length + 1;
    if (isBlank(lines[j]) || interrupts(lines[j], depth)) break;
    rows.push(splitRow(lines[j]));
  }
  return { t: "table", head: table.head, aligns: table.aligns, rows, end: j, look: j };
}

function parseParagraph(lines, i, ctx, depth) {
  const parts = [lines[i].trim()];
  let j = i + 1;
  let look = i + 1;
  for (; j < lines.length; j++) {
    const line = lines[j];
    ctx.steps += line.length + 1;
    look = j;
    if (isBlank(line) || interrupts(line, depth)) break;
    if (line.includes("|")) {
      look = j + 1; // tableStart reads the next line
      if (tableStart(lines, j)) break;
    }
    parts.push(line.trim());
  }
  return { t: "p", text: parts.join("\n"), end: j, look: Math.max(look, j) };
}

// -------------------------------------------------------------------------------------------- block output

function renderBlock(block, ctx) {
  const doc = ctx.doc;
  ctx.steps++;
  switch (block.t) {
    case "p": return inlineInto(doc.createElement("p"), block.text, ctx);
    case "h": return inlineInto(doc.createElement(`h${Math.min(block.level + 2, 6)}`), block.text, ctx);
    case "hr": return doc.createElement("hr");
    case "quote": {
      const q = doc.createElement("blockquote");
      q.append(fragment(doc, block.kids.map((b) => renderBlock(b, ctx))));
      return q;
    }
    case "code": return codeBlock(block.code, block.lang, ctx);
    case "list": return renderList(block, ctx);
    default: return renderTable(block, ctx);
  }
}

function renderList(block, ctx) {
  const list = ctx.doc.createElement(block.ordered ? "ol" : "ul");
  if (block.ordered && block.number !== 1) list.start = block.number;
  for (const kids of block.items) {
    const li = ctx.doc.createElement("li");
    for (const kid of kids) {
      if (kid.t === "p" && !block.loose) inlineInto(li, kid.text, ctx);
      else li.append(renderBlock(kid, ctx));
    }
    list.append(li);
  }
  return list;
}

function renderTable(block, ctx) {
  const doc = ctx.doc;
  const row = (cells, tag) => {
    const tr = doc.createElement("tr");
    block.aligns.forEach((align, k) => {
      const cell = inlineInto(doc.createElement(tag), cells[k] ?? "", ctx);
      if (align) cell.className = `align-${align}`;
      tr.append(cell);
    });
    return tr;
  };
  const table = doc.createElement("table");
  table.className = "md-table";
  const head = doc.createElement("thead");
  head.append(row(block.head, "th"));
  table.append(head);
  if (block.rows.length) {
    const body = doc.createElement("tbody");
    body.append(fragment(doc, block.rows.map((cells) => row(cells, "td"))));
    table.append(body);
  }
  return table;
}

function codeBlock(code, lang, ctx) {
  const doc = ctx.doc;
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
  copy.setAttribute("aria-label", lang ? `Copy ${lang} code` : "Copy code");
  copy.addEventListener("click", () => copyText(code, copy));
  head.append(label, copy);
  const pre = doc.createElement("pre");
  const el = doc.createElement("code");
  if (lang) el.dataset.lang = lang;
  highlight(code, lang, el, ctx);
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

// --------------------------------------------------------------------------------------------------- inline
// One left-to-right scan builds a doubly linked list of nodes; `*`/`_`/`~~` runs go on a delimiter stack and
// `[`/`![` on a bracket stack, as in CommonMark's appendix; links close at `]`, emphasis is resolved per link and
// at the end.  Node kinds: text, delim (a run, ``n`` chars left), br, code, em/strong/del and link/image (``kids``),
// autolink.

function inlineInto(el, text, ctx) {
  emitInline(parseInline(text, ctx), el, ctx);
  return el;
}

function parseInline(text, ctx) {
  const st = { text, ctx, head: null, tail: null, delims: null, brackets: null, seq: 0, inactiveBelow: -1,
    ticks: null, links: null };
  const n = text.length;
  let i = 0;
  let from = 0; // start of the pending literal text
  const flush = (to) => { if (to > from) append(st, { t: "text", s: text.slice(from, to) }); };
  while (i < n) {
    ctx.steps++;
    const c = text.charCodeAt(i);
    if (c === 92) { // backslash: an escaped punctuation character is literal; before a line end it goes
      if (i + 1 < n && (ASCII_PUNCT.includes(text[i + 1]) || text[i + 1] === "\n")) {
        flush(i);
        from = i + 1;
        i += text[i + 1] === "\n" ? 1 : 2;
      } else i++;
    } else if (c === 96) { // backtick run: a code span if a run of the same length follows
      const r = runEnd(text, i, c);
      ctx.steps += r - i;
      const close = closingTicks(st, r - i, r);
      if (close < 0) i = r;
      else {
        flush(i);
        append(st, { t: "code", s: codeSpan(text.slice(r, close)) });
        i = from = close + (r - i);
      }
    } else if (c === 42 || c === 95 || c === 126) { // * _ ~
      const r = runEnd(text, i, c);
      ctx.steps += r - i;
      if (c !== 126 || r - i === 2) {
        flush(i);
        addDelim(st, i, r);
        from = r;
      }
      i = r;
    } else if (c === 91 || (c === 33 && text.charCodeAt(i + 1) === 91)) { // [ or ![
      flush(i);
      openBracket(st, c === 33);
      i = from = i + (c === 33 ? 2 : 1);
    } else if (c === 93) { // ]
      flush(i);
      const end = closeBracket(st, i);
      from = end < 0 ? i : end;
      i = end < 0 ? i + 1 : end;
    } else if (c === 60 || c === 104) { // <https://...> or a bare http(s) URL
      const end = c === 60 ? angleLinkEnd(text, i) : bareUrlEnd(text, i);
      ctx.steps += Math.max(0, end - i);
      if (end < 0) i++;
      else {
        flush(i);
        append(st, { t: "autolink", s: c === 60 ? text.slice(i + 1, end - 1) : text.slice(i, end) });
        i = from = end;
      }
    } else if (c === 10) {
      flush(i);
      append(st, { t: "br" });
      i = from = i + 1;
    } else i++;
  }
  flush(n);
  processEmphasis(st, -1);
  const out = [];
  for (let node = st.head; node; node = node.next) out.push(node);
  return out;
}

function runEnd(text, i, c) {
  let r = i;
  while (text.charCodeAt(r) === c) r++;
  return r;
}

function append(st, node) {
  node.prev = st.tail;
  node.next = null;
  if (st.tail) st.tail.next = node;
  else st.head = node;
  st.tail = node;
}

function unlink(st, node) {
  if (node.prev) node.prev.next = node.next;
  else st.head = node.next;
  if (node.next) node.next.prev = node.prev;
  else st.tail = node.prev;
}

/** Where the next backtick run of exactly ``len`` at or after ``from`` starts, or -1 (runs indexed once, by length). */
function closingTicks(st, len, from) {
  if (!st.ticks) {
    st.ticks = new Map();
    const text = st.text;
    for (let i = text.indexOf("`"); i >= 0; i = text.indexOf("`", i)) {
      const r = runEnd(text, i, 96);
      let runs = st.ticks.get(r - i);
      if (!runs) st.ticks.set(r - i, (runs = { at: [], k: 0 }));
      runs.at.push(i);
      i = r;
    }
    st.ctx.steps += text.length;
  }
  const runs = st.ticks.get(len);
  if (!runs) return -1;
  while (runs.k < runs.at.length && runs.at[runs.k] < from) { runs.k++; st.ctx.steps++; } // only ever moves on
  return runs.k < runs.at.length ? runs.at[runs.k] : -1;
}

function codeSpan(s) {
  const t = s.replaceAll("\n", " ");
  return t.length > 2 && t[0] === " " && t[t.length - 1] === " " && !isBlank(t) ? t.slice(1, -1) : t;
}

function charBefore(text, i) {
  if (i === 0) return "";
  const c = text.charCodeAt(i - 1);
  return c >= 0xdc00 && c <= 0xdfff && i > 1 ? text.slice(i - 2, i) : text[i - 1];
}

function charAfter(text, i) {
  return i < text.length ? String.fromCodePoint(text.codePointAt(i)) : "";
}

function addDelim(st, i, r) {
  const ch = st.text[i];
  const before = charBefore(st.text, i);
  const after = charAfter(st.text, r);
  const spaceBefore = !before || SPACE.test(before);
  const spaceAfter = !after || SPACE.test(after);
  const punctBefore = !spaceBefore && PUNCT.test(before);
  const punctAfter = !spaceAfter && PUNCT.test(after);
  const left = !spaceAfter && (!punctAfter || spaceBefore || punctBefore);
  const right = !spaceBefore && (!punctBefore || spaceAfter || punctAfter);
  const canOpen = ch === "_" ? left && (!right || punctBefore) : left;
  const canClose = ch === "_" ? right && (!left || punctAfter) : right;
  const node = { t: "delim", ch, n: r - i };
  append(st, node);
  if (!canOpen && !canClose) return;
  const d = { node, ch, len: r - i, orig: r - i, canOpen, canClose, seq: st.seq++, below: st.delims, above: null };
  if (st.delims) st.delims.above = d;
  st.delims = d;
}

function removeDelim(st, d) {
  if (d.below) d.below.above = d.above;
  if (d.above) d.above.below = d.below;
  else st.delims = d.below;
}

function openBracket(st, image) {
  const node = { t: "text", s: image ? "![" : "[" };
  append(st, node);
  st.brackets = { node, image, seq: st.seq++, below: st.brackets };
}

/** At a `]`: a link or image if the last bracket opens one and `(destination)` follows; its end, or -1. */
function closeBracket(st, i) {
  const opener = st.brackets;
  if (!opener) return -1;
  st.brackets = opener.below;
  if (!opener.image && opener.seq < st.inactiveBelow) return -1; // no links inside links
  const dest = linkDestination(st, i + 1);
  if (!dest) return -1;
  processEmphasis(st, opener.seq);
  const node = { t: opener.image ? "image" : "link", href: dest.href, kids: [] };
  for (let k = opener.node.next; k; k = k.next) { node.kids.push(k); st.ctx.steps++; }
  node.prev = opener.node.prev;
  node.next = null;
  if (node.prev) node.prev.next = node;
  else st.head = node;
  st.tail = node;
  if (!opener.image) st.inactiveBelow = opener.seq;
  return dest.end;
}

/** ``(dest)``, ``(<dest>)`` or ``(dest "title")`` at ``p``: ``{ href, end }`` or null, in O(1) through the tables. */
function linkDestination(st, p) {
  const text = st.text;
  if (text[p] !== "(") return null;
  const tab = (st.links ??= linkTables(text, st.ctx));
  const q = tab.skip[p + 1];
  let from = q;
  let e;
  if (text[q] === "<") {
    const gt = tab.next(">", q + 1);
    const lt = tab.next("<", q + 1);
    const nl = tab.next("\n", q + 1);
    if (gt < 0 || (lt >= 0 && lt < gt) || (nl >= 0 && nl < gt)) return null;
    from = q + 1;
    e = gt + 1;
  } else e = Math.min(tab.space[q], tab.drop[q]);
  let k = tab.skip[e];
  if (k > e && (text[k] === "\"" || text[k] === "'" || text[k] === "(")) {
    const close = tab.next(text[k] === "(" ? ")" : text[k], k + 1);
    if (close < 0) return null;
    k = tab.skip[close + 1];
  }
  if (text[k] !== ")") return null;
  return { href: unescapePunct(text.slice(from, text[q] === "<" ? e - 1 : e)), end: k + 1 };
}

// For every position: ``skip``, the next non-whitespace; ``space``, the next whitespace or control character;
// ``drop``, the `)` that closes more parentheses than open from there (next-smaller element of the prefix balance);
// ``next(ch, i)``, the next unescaped ``ch``.  Built once per inline text, in O(n) each.
function linkTables(text, ctx) {
  const n = text.length;
  const escaped = new Uint8Array(n + 1);
  for (let i = 1; i < n; i++) if (text.charCodeAt(i - 1) === 92 && !escaped[i - 1]) escaped[i] = 1;
  const skip = new Int32Array(n + 2).fill(n);
  const space = new Int32Array(n + 1).fill(n);
  const balance = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    balance[i + 1] = balance[i] + (escaped[i] ? 0 : c === 40 ? 1 : c === 41 ? -1 : 0);
  }
  for (let i = n - 1; i >= 0; i--) {
    const c = text.charCodeAt(i);
    skip[i] = c === 32 || c === 9 || c === 10 ? skip[i + 1] : i;
    space[i] = c <= 32 || c === 127 ? i : space[i + 1];
  }
  const drop = new Int32Array(n + 1);
  const stack = [];
  for (let q = n; q >= 0; q--) {
    while (stack.length && balance[stack[stack.length - 1]] >= balance[q]) stack.pop();
    drop[q] = stack.length ? stack[stack.length - 1] - 1 : n;
    stack.push(q);
  }
  const cache = new Map();
  const next = (ch, from) => {
    let at = cache.get(ch);
    if (!at) {
      at = new Int32Array(n + 1).fill(-1);
      for (let i = n - 1; i >= 0; i--) at[i] = text[i] === ch && !escaped[i] ? i : at[i + 1];
      cache.set(ch, at);
      ctx.steps += n;
    }
    return from <= n ? at[from] : -1;
  };
  ctx.steps += 5 * n;
  return { skip, space, drop, next };
}

function unescapePunct(s) {
  if (!s.includes("\\")) return s;
  let out = "";
  let from = 0;
  for (let i = 0; i < s.length - 1; i++) {
    if (s[i] === "\\" && ASCII_PUNCT.includes(s[i + 1])) {
      out += s.slice(from, i);
      from = ++i;
    }
  }
  return out + s.slice(from);
}

function angleLinkEnd(text, i) {
  const head = text.slice(i + 1, i + 9).toLowerCase();
  if (!head.startsWith("http://") && !head.startsWith("https://") && !head.startsWith("mailto:")) return -1;
  let e = i + 1;
  while (e < text.length && text.charCodeAt(e) > 32 && text[e] !== "<" && text[e] !== ">") e++;
  return text[e] === ">" ? e + 1 : -1;
}

/** The end of a bare http(s) URL at ``i`` (GFM's extended autolink: trailing punctuation and unmatched `)` dropped). */
function bareUrlEnd(text, i) {
  if (!text.startsWith("http", i)) return -1;
  const p = i + (text[i + 4] === "s" ? 5 : 4);
  if (!text.startsWith("://", p)) return -1;
  const before = i ? text[i - 1] : " ";
  if (!SPACE.test(before) && !"*_~(<\"'".includes(before)) return -1;
  const host = p + 3;
  let e = host;
  let open = 0;
  let close = 0;
  for (; e < text.length; e++) {
    const c = text[e];
    if (text.charCodeAt(e) <= 32 || c === "<" || c === ">" || c === "\"" || c === "`" || c === "[" || c === "]") break;
    if (c === "(") open++;
    else if (c === ")") close++;
  }
  while (e > host) {
    const c = text[e - 1];
    if (URL_TRIM.includes(c)) e--;
    else if (c === ")" && close > open) { close--; e--; } else break;
  }
  return e > host ? e : -1;
}

// CommonMark's "process emphasis" over the delimiters above ``bottom`` (a sequence number).  A failed search
// sets a floor per kind of closer (character, can-open, length mod 3), so each delimiter is passed over at most
// once per kind; a match removes every delimiter between opener and closer.
function processEmphasis(st, bottom) {
  let closer = null;
  for (let d = st.delims; d && d.seq > bottom; d = d.below) { closer = d; st.ctx.steps++; }
  const floors = new Map();
  while (closer) {
    st.ctx.steps++;
    if (!closer.canClose) { closer = closer.above; continue; }
    const key = closer.ch === "~" ? "~" : `${closer.ch}${closer.canOpen ? 1 : 0}${closer.orig % 3}`;
    const floor = Math.max(floors.get(key) ?? bottom, bottom);
    let opener = closer.below;
    while (opener && opener.seq > floor && !pairs(opener, closer)) { opener = opener.below; st.ctx.steps++; }
    if (opener && opener.seq > floor) closer = emphasize(st, opener, closer);
    else {
      floors.set(key, closer.below ? closer.below.seq : bottom);
      const next = closer.above;
      if (!closer.canOpen) removeDelim(st, closer);
      closer = next;
    }
  }
  let d = st.delims;
  while (d && d.seq > bottom) d = d.below;
  st.delims = d;
  if (d) d.above = null;
}

function pairs(opener, closer) {
  if (opener.ch !== closer.ch || !opener.canOpen) return false;
  if (closer.ch === "~") return true;
  const both = opener.canClose || closer.canOpen;
  return !(both && (opener.orig + closer.orig) % 3 === 0 && (opener.orig % 3 !== 0 || closer.orig % 3 !== 0));
}

/** Wrap the nodes between ``opener`` and ``closer`` in em/strong/del; the closer to carry on with. */
function emphasize(st, opener, closer) {
  const use = closer.ch === "~" ? 2 : opener.len >= 2 && closer.len >= 2 ? 2 : 1;
  const node = { t: closer.ch === "~" ? "del" : use === 2 ? "strong" : "em", kids: [] };
  for (let k = opener.node.next; k !== closer.node; k = k.next) { node.kids.push(k); st.ctx.steps++; }
  opener.node.next = node;
  node.prev = opener.node;
  node.next = closer.node;
  closer.node.prev = node;
  opener.above = closer;
  closer.below = opener;
  opener.len -= use;
  closer.len -= use;
  opener.node.n = opener.len;
  closer.node.n = closer.len;
  if (!opener.len) {
    unlink(st, opener.node);
    removeDelim(st, opener);
  }
  if (closer.len) return closer;
  const next = closer.above;
  unlink(st, closer.node);
  removeDelim(st, closer);
  return next;
}

// ------------------------------------------------------------------------------------------- inline output

/** Append ``nodes`` to ``parent`` without recursion (an explicit stack of frames); adjacent text is merged. */
function emitInline(nodes, parent, ctx) {
  const out = { ctx, el: null, buf: "" };
  const stack = [{ nodes, i: 0, el: parent, depth: 0, inLink: false }];
  while (stack.length) {
    const frame = stack[stack.length - 1];
    if (frame.i === frame.nodes.length) { stack.pop(); continue; }
    emitNode(frame.nodes[frame.i++], frame, stack, out);
  }
  flushText(out);
}

function addText(out, el, s) {
  if (out.el !== el) flushText(out);
  out.el = el;
  out.buf += s;
}

function addNode(out, el, node) {
  flushText(out);
  el.append(node);
  return node;
}

function flushText(out) {
  if (out.buf) out.el.append(out.buf);
  out.buf = "";
  out.el = null;
}

function emitNode(node, frame, stack, out) {
  const doc = out.ctx.doc;
  out.ctx.steps++;
  switch (node.t) {
    case "text": addText(out, frame.el, node.s); break;
    case "delim": addText(out, frame.el, node.ch.repeat(node.n)); break;
    case "br": addNode(out, frame.el, doc.createElement("br")); break;
    case "code": addNode(out, frame.el, doc.createElement("code")).textContent = node.s; break;
    case "em": case "strong": case "del": {
      const el = frame.depth < MAX_INLINE_DEPTH ? addNode(out, frame.el, doc.createElement(node.t)) : frame.el;
      stack.push({ nodes: node.kids, i: 0, el, depth: frame.depth + 1, inLink: frame.inLink });
      break;
    }
    default: emitLink(node, frame, stack, out);
  }
}

function emitLink(node, frame, stack, out) {
  const ctx = out.ctx;
  const url = safeUrl(node.t === "autolink" ? node.s : node.href);
  const sub = (nodes, el) => stack.push({ nodes, i: 0, el, depth: frame.depth + 1, inLink: true });
  if (node.t === "autolink") {
    if (!url || frame.inLink) addText(out, frame.el, node.s);
    else {
      addNode(out, frame.el, anchor(url, ctx)).textContent = node.s;
      if (url.hostname.includes("xn--")) addNode(out, frame.el, hostNote(node.s, url, ctx));
    }
    return;
  }
  const label = node.t === "image" ? IMAGE_MARK + (plainText(node.kids, ctx) || "image") : null;
  if (frame.inLink || !url) { // a link inside a link is its text; a link that is not allowed shows its target
    const suffix = frame.inLink || !node.href ? "" : ` (${node.href})`;
    if (label !== null) addText(out, frame.el, label + suffix);
    else {
      if (suffix) sub([{ t: "text", s: suffix }], frame.el);
      sub(node.kids, frame.el);
    }
    return;
  }
  const a = addNode(out, frame.el, anchor(url, ctx));
  const text = label ?? plainText(node.kids, ctx);
  if (!sameTarget(text, url, node.href) || url.hostname.includes("xn--")) {
    addNode(out, frame.el, hostNote(text, url, ctx));
  }
  if (label !== null) a.textContent = label;
  else sub(node.kids, a);
}

/** A URL for http(s) (with a host) and mailto links, null for anything else (javascript:, data:, relative...). */
function safeUrl(raw) {
  const s = raw.trim();
  if (!SAFE_SCHEME.test(s)) return null;
  let url;
  try {
    url = new URL(s);
  } catch {
    return null;
  }
  if (url.protocol === "mailto:") return url.pathname ? url : null;
  return (url.protocol === "http:" || url.protocol === "https:") && url.hostname ? url : null;
}

function anchor(url, ctx) {
  const a = ctx.doc.createElement("a");
  a.href = url.href;
  a.title = url.href;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  return a;
}

/** " (host)" after a link whose text is not its URL or whose host is an IDN (shown in punycode, against look-alike
 * letters); flagged when the text names another host. */
function hostNote(text, url, ctx) {
  const span = ctx.doc.createElement("span");
  const mailto = url.protocol === "mailto:";
  const claimed = mailto ? null : claimedHost(text);
  const mismatch = claimed !== null && claimed !== bareHost(url.hostname);
  span.className = mismatch ? "link-host link-host-mismatch" : "link-host";
  span.textContent = ` (${mismatch ? "⚠ " : ""}${mailto ? url.pathname : url.hostname})`;
  return span;
}

function bareHost(host) {
  return host.startsWith("www.") ? host.slice(4) : host;
}

/** The host that a link text looks like ("https://bank.com/x", "www.bank.com", "bank.com"), or null. */
function claimedHost(text) {
  let s = text.trim().toLowerCase();
  const scheme = s.indexOf("://");
  const hasScheme = scheme > 0 && scheme <= 5;
  if (hasScheme) s = s.slice(scheme + 3);
  let end = 0;
  while (end < s.length && !"/?#: ".includes(s[end])) end++;
  const host = s.slice(0, end);
  const dot = host.lastIndexOf(".");
  if (dot <= 0 || dot === host.length - 1 || (end < s.length && s[end] === " ")) return null;
  // "main.py" is a file name, not a host: without a scheme or "www." only common top-level domains count
  if (!hasScheme && !host.startsWith("www.") && !COMMON_TLDS.has(host.slice(dot + 1))) return null;
  try {
    return bareHost(new URL(`https://${host}/`).hostname);
  } catch {
    return null;
  }
}

function sameTarget(text, url, href) {
  const norm = (s) => {
    let t = s.trim().toLowerCase();
    for (const p of ["https://", "http://", "mailto:"]) if (t.startsWith(p)) t = t.slice(p.length);
    if (t.startsWith("www.")) t = t.slice(4);
    return t.endsWith("/") ? t.slice(0, -1) : t;
  };
  const t = norm(text);
  return t === norm(href) || t === norm(url.href);
}

/** The text of inline nodes (an image's alt, a link's label), without recursion. */
function plainText(nodes, ctx) {
  let out = "";
  const stack = [{ nodes, i: 0 }];
  while (stack.length) {
    const frame = stack[stack.length - 1];
    if (frame.i === frame.nodes.length) { stack.pop(); continue; }
    const node = frame.nodes[frame.i++];
    ctx.steps++;
    if (node.t === "image") out += IMAGE_MARK;
    if (node.kids) stack.push({ nodes: node.kids, i: 0 });
    else if (node.t === "delim") out += node.ch.repeat(node.n);
    else if (node.t === "br") out += " ";
    else out += node.s;
  }
  return out;
}

// ------------------------------------------------------------------------------------------- highlighting
// One pass over the code: comments, strings, numbers and keywords become <span class="tok-...">, the rest text.

const KEYWORDS = {
  js: "as async await break case catch class const continue debugger default delete do else enum export extends " +
    "false finally for from function get if implements import in instanceof interface let new null of private " +
    "protected public readonly return set static super switch this throw true try type typeof undefined var void " +
    "while with yield",
  py: "and as assert async await break case class continue def del elif else except False finally for from global " +
    "if import in is lambda match None nonlocal not or pass raise return self True try while with yield",
  c: "auto bool break case catch char class const constexpr continue default define delete do double else endif " +
    "enum extern false float for goto if ifdef ifndef include inline int long namespace new nullptr private " +
    "protected public register return short signed sizeof static struct switch template this throw true try " +
    "typedef typename union unsigned using virtual void volatile while",
  rust: "as async await break const continue crate else enum extern false fn for if impl in let loop match mod move " +
    "mut pub ref return self Self static struct super trait true type unsafe use where while",
  go: "break case chan const continue default defer else fallthrough false for func go goto if import interface " +
    "map nil package range return select struct switch true type var",
  sh: "case do done elif else esac exit export fi for function if in local return set then unset until while",
  json: "false null true",
};
const LEXERS = {
  js: { line: "//", block: true, quotes: "\"'`", multiline: "`" },
  py: { line: "#", quotes: "\"'", triple: true },
  c: { line: "//", block: true, quotes: "\"'" },
  rust: { line: "//", block: true, quotes: "\"" },
  go: { line: "//", block: true, quotes: "\"'`", multiline: "`" },
  sh: { line: "#", quotes: "\"'", wordComment: true },
  json: { quotes: "\"" },
  html: { markup: true },
};
const ALIASES = new Map(Object.entries({
  js: "js", javascript: "js", mjs: "js", cjs: "js", jsx: "js", ts: "js", typescript: "js", tsx: "js", node: "js",
  jsonc: "js", py: "py", python: "py", python3: "py", py3: "py", c: "c", h: "c", cpp: "c", "c++": "c", cc: "c",
  cxx: "c", hpp: "c", java: "c", cs: "c", csharp: "c", rust: "rust", rs: "rust", go: "go", golang: "go",
  sh: "sh", bash: "sh", shell: "sh", zsh: "sh", console: "sh", json: "json", html: "html", xml: "html",
  svg: "html", htm: "html", xhtml: "html",
}));
const KEYWORD_SETS = new Map(Object.entries(KEYWORDS).map(([k, v]) => [k, new Set(v.split(" "))]));

function highlight(code, lang, parent, ctx) {
  const name = ALIASES.get(lang.toLowerCase());
  ctx.steps += code.length;
  if (!name) { parent.textContent = code; return; }
  const spec = LEXERS[name];
  const words = KEYWORD_SETS.get(name) ?? new Set();
  const state = { inTag: false };
  let plain = 0;
  let i = 0;
  while (i < code.length) {
    ctx.steps++;
    const tok = spec.markup ? markupToken(code, i, state) : codeToken(code, i, spec, words);
    if (!tok.cls) { i = tok.end; continue; }
    if (i > plain) parent.append(code.slice(plain, i));
    const span = ctx.doc.createElement("span");
    span.className = `tok-${tok.cls}`;
    span.textContent = code.slice(i, tok.end);
    parent.append(span);
    i = plain = tok.end;
  }
  if (plain < code.length) parent.append(code.slice(plain));
}

const isIdent = (c) => (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 36;

function until(code, close, from) {
  const e = code.indexOf(close, from);
  return e < 0 ? code.length : e + close.length;
}

function stringEnd(code, i, quote, multiline) {
  for (let j = i + 1; j < code.length; j++) {
    if (code[j] === "\\") j++;
    else if (code[j] === quote) return j + 1;
    else if (code[j] === "\n" && !multiline) return j;
  }
  return code.length;
}

function codeToken(code, i, spec, words) {
  const ch = code[i];
  if (spec.line && code.startsWith(spec.line, i) && (!spec.wordComment || i === 0 || SPACE.test(code[i - 1]))) {
    const e = code.indexOf("\n", i);
    return { cls: "comment", end: e < 0 ? code.length : e };
  }
  if (spec.block && code.startsWith("/*", i)) return { cls: "comment", end: until(code, "*/", i + 2) };
  if (spec.triple && (code.startsWith("\"\"\"", i) || code.startsWith("'''", i))) {
    return { cls: "string", end: until(code, ch.repeat(3), i + 3) };
  }
  if (spec.quotes.includes(ch)) return { cls: "string", end: stringEnd(code, i, ch, spec.multiline === ch) };
  const c = code.charCodeAt(i);
  if (!isIdent(c)) return { cls: null, end: i + 1 };
  let e = i + 1;
  while (e < code.length && (isIdent(code.charCodeAt(e)) || (c >= 48 && c <= 57 && code[e] === "."))) e++;
  if (c >= 48 && c <= 57) return { cls: "number", end: e };
  return { cls: words.has(code.slice(i, e)) ? "keyword" : null, end: e };
}

function markupToken(code, i, state) {
  const ch = code[i];
  if (code.startsWith("<!--", i)) return { cls: "comment", end: until(code, "-->", i + 4) };
  if (ch === "<" && /^[A-Za-z/!?]$/.test(code[i + 1] ?? "")) {
    let e = i + 2;
    while (e < code.length && /^[\w:.-]$/.test(code[e])) e++;
    state.inTag = true;
    return { cls: "keyword", end: e };
  }
  if (state.inTag && (ch === "\"" || ch === "'")) return { cls: "string", end: stringEnd(code, i, ch, true) };
  if (ch === ">") state.inTag = false;
  return { cls: null, end: i + 1 };
}
