package tokenizer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// edgeTexts exercise the pre-tokenizer and the added-token matcher.
var edgeTexts = []string{
	"",
	" ",
	"a",
	"Hello world",
	"1234567890",
	"3.14159 + 2.71828 = 5.85987",
	"123456789012345678901234567890",
	"x^2 + 10000000000x - 999999 = 0",
	"a  b   c    d     e",
	"trailing spaces   ",
	"   leading spaces",
	"\t\ttabs\t and\tspaces \t",
	"line one\nline two\n\n\nline five",
	"windows\r\nline\r\n\r\nends\r\n",
	"\r\n\r\n  \r\n\t",
	"spaces before newline   \n   after",
	strings.Repeat(" ", 300),
	strings.Repeat("\n", 50),
	strings.Repeat("=", 200),
	strings.Repeat("ab", 500),
	"你好，世界。这是一个测试。",
	"日本語のテキストとカタカナ、ひらがな",
	"한국어 문장입니다",
	"Ελληνικά και Русский текст",
	"emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷🇯🇵 ✨",
	"naïve café résumé Zürich",
	"e\u0301 versus \u00e9 and A\u030a",
	"non\u00a0breaking\u2003em\u2009thin",
	"I'm sure you'RE right, he'll say we've DON'T it's",
	"'s 's 'S 'll",
	"$\\frac{1}{2} + \\sqrt{x^2+1}$ and \\[\\int_0^1 f(x)\\,dx\\]",
	"\\boxed{\\dfrac{3}{4}}",
	"func main() {\n\tfmt.Println(\"hi\")\n}\n",
	"<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
	"<think>\nreasoning\n</think>\n\nanswer",
	"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
	"<|endoftext|><|end_of_text|>",
	"almost special <|im_star|> <|eot_id <|",
	"<|im_end|><|im_end|>x<|im_end|>",
	"https://example.com/path?q=1&r=2#frag",
	"mixed123abc456DEF",
	"\x00\x01\x7f control",
	"rare: ∮ 𝔘 ꙮ ᚠᛇ ⸘ 🜁 and 🦜", // outside Llama 2's vocabulary: byte fallback
	"<s>Hello</s> <s> spaced </s>\n<unk>",
	"<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
	"<unused0><unused6241> <h1>Title</h1> <mask>[multimodal]<end_of_turn",
	"literal ▁ and ▁▁ marks, \u2581space",
	"\n\t\n \n\t\t\t  \n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
	"  two leading, two trailing  ",
	"digits 0 01 0.5 1e-9 12,345,678 ½ ٣",
	// o200k splits words at case changes and takes contractions of any case
	// after them, joins marks to letters and "/" and newlines to punctuation.
	"I'M HERE, we'LL see: THEY'RE sure it'S Ok'd, you'Ve I'd WE'D 'Tis",
	"CamelCase XMLHttpRequest iPhone McDONALD'S HTTPServer ABCdef aBC",
	"ǅemal ǈubljana ʰello ˢup 中文English Ελληνικά'S ΑθήναΑΘΗΝΑ МоскваМОСКВА",
	"path/to/file.txt\n/next //\n\n/ ./x ../y//\r\n/ a/b",
	"\u0301leading mark, a\u0301\u0302 X\u0308Y ..\u0301 नमस्ते שָׁלוֹם مَرْحَبًا",
}

func TestEncodeMatchesReference(t *testing.T) {
	for _, name := range []string{"qwen3", "llama3_1", "llama3", "llama2", "gemma3", "o200k"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel() // node is slow and single-threaded
			tok := loadRef(t, name)
			ref := refCorpus(t, name)
			bad := 0
			for i, text := range ref.texts {
				got := tok.Encode(text)
				if !slices.Equal(got, ref.ids[i]) {
					bad++
					if bad <= 5 {
						t.Errorf("text %d %q:\n got %v\nwant %v", i, clip(text), got, ref.ids[i])
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d texts differ", bad, len(ref.texts))
			}
			tricky := len(referenceTrickyTexts())
			t.Logf("%s: %d texts compared (%d edge strings, %d random strings of tricky runes, %d MATH train problems and solutions)",
				name, len(ref.texts), len(edgeTexts), tricky, len(ref.texts)-len(edgeTexts)-tricky)
		})
	}
}

// TestDecodeMatchesReference decodes the reference ids of every text with
// the reference's decoder ("▁" as spaces, <0xXX> byte tokens, Llama 2's
// leading space stripped, Gemma's added "▁▁" and "\n\n" tokens; for o200k,
// byte-level tokens joined into characters) and checks the path for partial
// characters is exercised: byte-fallback tokens, or byte-level tokens that
// hold part of a character.
func TestDecodeMatchesReference(t *testing.T) {
	for _, name := range decodeModels {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tok := loadRef(t, name)
			ref := refCorpus(t, name)
			partial := 0
			for i, text := range ref.texts {
				if got := tok.Decode(ref.ids[i]); got != ref.decoded[i] {
					t.Errorf("Decode of text %d %q = %q, want %q", i, clip(text), clip(got), clip(ref.decoded[i]))
				}
				for _, id := range ref.ids[i] {
					if tok.sp != nil && tok.sp.isByte[id] || tok.sp == nil && !utf8.Valid(tok.idBytes[id]) {
						partial++
					}
				}
			}
			if partial == 0 {
				t.Error("no text encodes to tokens holding part of a character: that path is not exercised")
			}
			t.Logf("%d texts, %d tokens holding part of a character", len(ref.texts), partial)
		})
	}
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

func TestDecodeInvertsEncode(t *testing.T) {
	texts := append(slices.Clone(edgeTexts), mathTexts(t)...)
	for _, name := range []string{"qwen3", "llama3_1", "llama2", "gemma3", "o200k"} {
		t.Run(name, func(t *testing.T) {
			tok := loadRef(t, name)
			for _, text := range texts {
				if name == "llama2" && strings.Contains(text, "<s>") {
					continue // "▁" prepended after a special token: see TestDecodeMatchesReference
				}
				if tok.sp != nil && strings.Contains(text, "▁") {
					continue // a "▁" in the text is a space to SentencePiece-style BPE
				}
				want := text
				if tok.nfc {
					want = norm.NFC.String(text) // Qwen normalises first
				}
				if got := tok.Decode(tok.Encode(text)); got != want {
					t.Errorf("Decode(Encode(%q)) = %q", clip(text), clip(got))
				}
			}
		})
	}
}

func TestDecodeSplitCharacter(t *testing.T) {
	tok := loadRef(t, "llama3_1")
	ids := tok.Encode("😀")
	if len(ids) < 2 {
		t.Fatalf("emoji is one token (%v) in Llama-3.1: the split case is not exercised", ids)
	}
	if got := tok.Decode(ids[:1]); !strings.Contains(got, "\uFFFD") {
		t.Errorf("Decode of half a character = %q, want U+FFFD", got)
	}
	if got := string(tok.DecodeBytes(ids[:1])) + string(tok.DecodeBytes(ids[1:])); got != "😀" {
		t.Errorf("DecodeBytes pieces join to %q", got)
	}
}

func TestSpecialIDs(t *testing.T) {
	cases := []struct {
		name               string
		bos, eos, pad, eot string
		stop               []string
	}{
		{"qwen3", "", "<|im_end|>", "<|endoftext|>", "<|im_end|>", []string{"<|im_end|>"}},
		{"llama3_1", "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>", "<|eot_id|>", []string{"<|eot_id|>"}},
		{"llama3", "<|begin_of_text|>", "<|end_of_text|>", "<|end_of_text|>", "<|eot_id|>", []string{"<|end_of_text|>", "<|eot_id|>"}},
		{"llama2", "<s>", "</s>", "</s>", "</s>", []string{"</s>"}},
		{"gemma3", "<bos>", "<end_of_turn>", "<pad>", "<end_of_turn>", []string{"<end_of_turn>"}},
		{"o200k", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>", []string{"<|endoftext|>"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // node is slow and single-threaded
			tok := loadRef(t, c.name)
			names := []string{c.eos, c.pad, c.eot}
			if c.bos != "" {
				names = append(names, c.bos)
			}
			ref := map[string]int{"": -1}
			for i, ids := range refEncode(t, c.name, names) {
				if len(ids) != 1 {
					t.Fatalf("reference encodes %q as %v, want one id", names[i], ids)
				}
				ref[names[i]] = ids[0]
			}
			id := func(s string) int { return ref[s] }
			want := Special{BOS: id(c.bos), EOS: id(c.eos), Pad: id(c.pad), EndOfTurn: id(c.eot)}
			if got := tok.Special(); got != want {
				t.Errorf("Special() = %+v, want %+v", got, want)
			}
			var stop []int
			for _, s := range c.stop {
				stop = append(stop, id(s))
			}
			if got := tok.StopIDs(); !slices.Equal(got, stop) {
				t.Errorf("StopIDs() = %v, want %v", got, stop)
			}
			for _, id := range stop {
				if !tok.IsSpecial(id) {
					t.Errorf("IsSpecial(%d) = false for a stop token", id)
				}
			}
			if plain := tok.Encode("hello"); tok.IsSpecial(plain[0]) {
				t.Errorf("IsSpecial(%d) = true for \"hello\"", plain[0])
			}
		})
	}
}

func TestLoadErrorsNameTheField(t *testing.T) {
	cases := []struct {
		name, json, want string
		unsupported      bool
	}{
		{"not json", `{`, "parse tokenizer.json", false},
		{"wordpiece", `{"model": {"type": "WordPiece", "vocab": {}}}`, "model.type", true},
		{"bad merge", `{"model": {"type": "BPE", "vocab": ` + byteVocab() + `, "merges": ["a"]}}`, "model.merges[0]", false},
		{"unknown merge token", `{"model": {"type": "BPE", "vocab": ` + byteVocab() + `, "merges": ["a zz"]}}`, "model.merges[0]", false},
		{"missing byte", `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`, "no token for byte", false},
		{"normalizer", `{"normalizer": {"type": "Lowercase"}, "model": {"type": "BPE", "vocab": ` + byteVocab() + `, "merges": []}}`, "normalizer \"Lowercase\"", true},
		{"byte fallback with ByteLevel", `{"decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "byte_fallback": true, "vocab": ` + byteVocab() + `, "merges": []}}`, "model.byte_fallback", true},
		{"regex replace", `{"normalizer": {"type": "Replace", "pattern": {"Regex": " +"}, "content": "▁"}, "decoder": ` + spDecoder + `, "model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0}, "merges": []}}`, "normalizer Replace", true},
		{"decoder order", `{"decoder": {"type": "Sequence", "decoders": [{"type": "Fuse"}, {"type": "ByteFallback"}]}, "model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0}, "merges": []}}`, "decoder \"ByteFallback\"", true},
		{"unknown unk", `{"decoder": ` + spDecoder + `, "model": {"type": "BPE", "byte_fallback": true, "unk_token": "<unk>", "vocab": {"a": 0}, "merges": []}}`, "model.unk_token", false},
		{"metaspace replacement", `{"pre_tokenizer": {"type": "Metaspace", "replacement": "", "prepend_scheme": "always"}, "decoder": ` + spDecoder + `, "model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0}, "merges": []}}`, "Metaspace replacement", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(c.json), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load error = %v, want it to name %q", err, c.want)
			}
			if errors.Is(err, ErrUnsupported) != c.unsupported {
				t.Errorf("errors.Is(err, ErrUnsupported) = %v, want %v", !c.unsupported, c.unsupported)
			}
		})
	}
	t.Run("no config", func(t *testing.T) {
		tok, err := Load(strings.NewReader(`{"model": {"type": "BPE", "vocab": `+byteVocab()+`, "merges": []}}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		if s := tok.Special(); s != (Special{BOS: -1, EOS: -1, Pad: -1, EndOfTurn: -1}) || len(tok.StopIDs()) != 0 {
			t.Errorf("without a config: Special() = %+v, StopIDs() = %v, want none", s, tok.StopIDs())
		}
	})
	t.Run("config", func(t *testing.T) {
		tj := `{"model": {"type": "BPE", "vocab": ` + byteVocab() + `, "merges": []}}`
		_, err := Load(strings.NewReader(tj), strings.NewReader(`{"eos_token": "<|nope|>"}`))
		if err == nil || !strings.Contains(err.Error(), "tokenizer_config.json: eos_token") {
			t.Fatalf("Load error = %v, want it to name eos_token", err)
		}
	})
	t.Run("missing dir", func(t *testing.T) {
		_, err := LoadDir(filepath.Join(t.TempDir(), "nothing"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("LoadDir error = %v, want not-exist", err)
		}
	})
}

// spDecoder is the decoder of SentencePiece-style BPE tokenizer.json files.
const spDecoder = `{"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}`

// byteVocab is a vocabulary of the 256 single bytes, as JSON.
func byteVocab() string {
	var b strings.Builder
	b.WriteString("{")
	for i := range 256 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"`)
		r := byteToRune[i]
		if r == '"' || r == '\\' {
			b.WriteString(`\`)
		}
		b.WriteRune(r)
		b.WriteString(`":`)
		b.WriteString(strconv.Itoa(i))
	}
	b.WriteString("}")
	return b.String()
}

func TestHashIsTokenizerJSON(t *testing.T) {
	tok := loadRef(t, "llama3_1")
	raw, err := os.ReadFile(filepath.Join(modelDir("llama3_1"), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	if got, want := tok.Hash(), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Hash() = %s, want the sha256 of tokenizer.json %s", got, want)
	}
}

func TestEncodeConcurrently(t *testing.T) {
	for _, name := range []string{"qwen3", "llama2", "gemma3"} {
		t.Run(name, func(t *testing.T) { encodeConcurrently(t, loadRef(t, name)) })
	}
}

func encodeConcurrently(t *testing.T, tok *Tokenizer) {
	texts := mathTexts(t)[:400]
	want := make([][]int, len(texts))
	for i, s := range texts {
		want[i] = tok.Encode(s)
	}
	tok.mu.Lock()
	clear(tok.cache)
	tok.mu.Unlock()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range texts {
				k := (i + g*100) % len(texts)
				if got := tok.Encode(texts[k]); !slices.Equal(got, want[k]) {
					t.Errorf("goroutine %d text %d: ids differ from a serial encoding", g, k)
					return
				}
			}
		})
	}
	wg.Wait()
}
