// Server mode: the page talks to `emberllm serve` (OpenAI-style /v1/chat/completions, streamed as SSE).

export class ServerError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

/** A client for the server that served this page, or the one at Settings' Server URL: ``probe()``, ``chat(...)``,
 * ``abort()``. */
export class ServerEngine {
  constructor(getKey, serverUrl = "") {
    this.getKey = getKey;
    this.controller = null;
    this.props = null;
    this.configure(serverUrl);
  }

  /** Talk to ``serverUrl`` (http(s), any path: the API's base), or to this page's own origin when it is empty. */
  configure(serverUrl) {
    const url = (serverUrl || "").trim();
    this.base = url ? new URL(url.endsWith("/") ? url : `${url}/`, location.href) : new URL(".", location.href);
    this.remote = this.base.origin !== location.origin;
    this.props = null;
  }

  /** Why a server on another origin did not answer: down, or its CORS policy leaves this page out. */
  unreachableMessage() {
    return `The page (${location.origin}) cannot reach the server at ${this.base.href}: it is not running, or it ` +
      `does not allow this page's origin. Start it with --cors-origin ${location.origin}, or correct Server URL ` +
      "in Settings.";
  }

  /** The API key as X-Api-Key (llama-server and emberllm take it as they take a bearer token): a server on
   * another origin allows it with its default --cors-headers "*", which browsers never let cover Authorization. */
  _headers() {
    const key = this.getKey();
    return key ? { "X-Api-Key": key } : {};
  }

  /** GET props: "ok" (props kept), "auth" (a server that wants an API key), "none" (a static host) or, for a
   * server on another origin, "unreachable" (down, or not allowing this origin: the browser does not say which). */
  async probe() {
    try {
      const resp = await fetch(new URL("props", this.base), { headers: this._headers(), cache: "no-store" });
      if (resp.status === 401) return "auth";
      if (!resp.ok) return "none";
      const props = await resp.json();
      if (!props || !props.default_generation_settings) return "none";
      this.props = props;
      return "ok";
    } catch {
      return this.remote ? "unreachable" : "none";
    }
  }

  /** Stream a reply; resolves to {finishReason, timings} (timings in the in-browser engine's shape). */
  async chat(messages, o, onToken) {
    this.controller = new AbortController();
    const body = {
      messages, stream: true, stream_options: { include_usage: true }, max_tokens: o.nPredict,
      temperature: o.temperature, top_k: o.topK, top_p: o.topP, min_p: o.minP, repeat_penalty: o.repeatPenalty,
    };
    if (o.seed !== undefined) body.seed = o.seed;
    if (o.jsonSchema) {
      body.response_format = Object.keys(o.jsonSchema).length ? { type: "json_schema", json_schema: {
        name: "reply", schema: o.jsonSchema } } : { type: "json_object" };
    }
    let resp;
    try {
      resp = await fetch(new URL("v1/chat/completions", this.base), {
        method: "POST", headers: { "Content-Type": "application/json", ...this._headers() }, body: JSON.stringify(body),
        signal: this.controller.signal,
      });
    } catch (err) {
      if (err.name === "AbortError") return { finishReason: "cancelled", timings: null };
      if (this.remote) throw new ServerError("unreachable", this.unreachableMessage());
      throw new ServerError("network", `The server did not answer (${err.message}). Is emberllm serve still running?`);
    }
    if (resp.ok && !/^text\/event-stream\b/i.test(resp.headers.get("content-type") || "")) {
      const start = (await resp.text().catch(() => "")).replace(/\s+/g, " ").trim().slice(0, 80);
      throw new ServerError("server-stream", `The reply is ${resp.headers.get("content-type") || "untyped"}, not an ` +
        `event stream${start ? ` (it starts "${start}")` : ""}.`);
    }
    if (!resp.ok) {
      let message = `HTTP ${resp.status}`;
      try { message = (await resp.json()).error.message; } catch { /* not JSON */ }
      throw new ServerError(resp.status === 401 ? "auth" : "server", message);
    }
    let finishReason = null;
    let timings = null;
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += value;
        const events = buffer.split(/\r?\n\r?\n/);
        buffer = events.pop();
        for (const ev of events) {
          const data = ev.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
          if (!data || data === "[DONE]") continue;
          let obj;
          try {
            obj = JSON.parse(data);
          } catch {
            throw new ServerError("server-stream", `An event of the reply is not JSON: ${data.slice(0, 80)}`);
          }
          if (obj.error) throw new ServerError("server", obj.error.message);
          const choice = obj.choices?.[0];
          if (choice?.delta?.content) onToken(choice.delta.content);
          if (choice?.finish_reason) finishReason = choice.finish_reason;
          if (obj.timings) timings = fromServerTimings(obj.timings, obj.usage);
        }
      }
    } catch (err) {
      if (err.name === "AbortError") return { finishReason: "cancelled", timings };
      throw err;
    }
    return { finishReason: finishReason || "stop", timings };
  }

  abort() {
    this.controller?.abort();
  }
}

/** llama-server's timings (and OpenAI's usage, sent with them) in the in-browser engine's shape. */
function fromServerTimings(t, usage) {
  return { promptTokens: t.prompt_n, promptMs: t.prompt_ms, evalTokens: t.predicted_n, evalMs: t.predicted_ms,
    cachedTokens: t.cache_n, generatedTokens: usage?.completion_tokens ?? t.predicted_n };
}
