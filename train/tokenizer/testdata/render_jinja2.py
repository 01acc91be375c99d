"""Renders chat templates the way Hugging Face transformers does (Python
jinja2, sandboxed, trim_blocks and lstrip_blocks, its tojson, raise_exception
and strftime_now), for the Go tests. Reads one JSON request on stdin:

  {"op": "render", "template": "...", "contexts": [{...}, ...]} -> ["text", ...]

A context may carry "__date" ("YYYY-MM-DD"): strftime_now then formats that
date instead of the clock's.
"""
import datetime
import json
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def main():
    req = json.load(sys.stdin)
    if req["op"] != "render":
        raise SystemExit("unknown op " + req["op"])
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(req["template"])
    out = []
    for ctx in req["contexts"]:
        ctx = dict(ctx)
        date = ctx.pop("__date", None)
        now = datetime.datetime.strptime(date, "%Y-%m-%d") if date else datetime.datetime.now()
        ctx["strftime_now"] = lambda fmt, now=now: now.strftime(fmt)
        out.append(template.render(**ctx))
    json.dump(out, sys.stdout, ensure_ascii=False)


main()
