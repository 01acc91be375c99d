"""Writes testdata/tinytok: a byte-level BPE tokenizer in Hugging Face's
tokenizer.json format (Qwen2's pre-tokenizer and chat template, 256 byte
tokens, a few merges, <|endoftext|> <|im_start|> <|im_end|>) whose 300-token
vocabulary fits the tiny test models.

usage: python3 make_tinytok.py   (run in testdata/; output is committed)
"""
import json


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


b2u = bytes_to_unicode()
vocab = {b2u[b]: b for b in range(256)}
merges = []
for pair in ["th", "he", "in", "er", "an", " t", " a", "re", "on", "at", "ou", "is", "nd", " s", "en", "es",
             "12", "34", "56", "78", "90", " =", " +", "\\b", "ox", "ed"]:
    a, b = b2u[ord(pair[0])], b2u[ord(pair[1])]
    vocab[a + b] = len(vocab)
    merges.append(a + " " + b)
special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
added = []
for s in special:
    added.append({"id": len(vocab) + len(added), "content": s, "single_word": False, "lstrip": False,
                  "rstrip": False, "normalized": False, "special": True})
qwen_split = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
              "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
tok = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": qwen_split}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
    "post_processor": None,
    "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
              "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
              "vocab": vocab, "merges": merges},
}
template = ("{%- for message in messages %}"
            "{%- if loop.first and message['role'] != 'system' %}"
            "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
            "{%- endif %}"
            "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
            "{%- endfor %}"
            "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
cfg = {"add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
       "model_max_length": 4096, "tokenizer_class": "Qwen2Tokenizer", "chat_template": template}
json.dump(tok, open("tinytok/tokenizer.json", "w"), ensure_ascii=False, indent=1)
json.dump(cfg, open("tinytok/tokenizer_config.json", "w"), ensure_ascii=False, indent=1)
print(len(vocab) + len(added), "tokens")
