package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runGrade(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"grade"}, args...))
	err = root.Execute()
	return out.String(), errb.String(), err
}

func TestGradeJSONLFromFile(t *testing.T) {
	in := `{"gold": "\\frac{1}{2}", "response": "Thus $\\boxed{0.5}$."}
{"gold": 27.0, "response": "The answer is 27."}

{"gold": "(0,9)", "response": "so \\boxed{[0,9)}"}
{"gold": "C", "response": "I pick \\boxed{\\text{(C)}}"}
`
	path := filepath.Join(t.TempDir(), "out.jsonl")
	if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runGrade(t, "", path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 verdicts, got %q", stdout)
	}
	want := []struct {
		line    int
		correct bool
		rule    string
		extr    string
	}{{1, true, "boxed", "0.5"}, {2, true, "answer_is", "27"}, {4, false, "boxed", "[0,9)"}, {5, true, "boxed", `\text{(C)}`}}
	for i, l := range lines {
		var v struct {
			Line      int    `json:"line"`
			Correct   bool   `json:"correct"`
			Rule      string `json:"rule"`
			Extracted string `json:"extracted"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatal(err)
		}
		if v.Line != want[i].line || v.Correct != want[i].correct || v.Rule != want[i].rule || v.Extracted != want[i].extr {
			t.Errorf("verdict %d = %+v, want %+v", i, v, want[i])
		}
	}
	if !strings.Contains(stderr, "graded 4: 3 correct (75.0%)") || !strings.Contains(stderr, "boxed 3") {
		t.Errorf("summary = %q", stderr)
	}
}

func TestGradeTSVFromStdin(t *testing.T) {
	stdout, stderr, err := runGrade(t, "1/2\tso the answer is $0.5$.\n3\t\\boxed{4}\n\\frac{\\sqrt2}{2}\t\\boxed{\\frac{1}{\\sqrt{2}}}\n", "--format", "tsv", "-")
	if err != nil {
		t.Fatal(err)
	}
	if stdout != "1\n0\n1\n" {
		t.Errorf("stdout = %q", stdout)
	}
	if !strings.HasPrefix(stderr, "graded 3: 2 correct") {
		t.Errorf("stderr = %q", stderr)
	}
}

func TestGradeRelTol(t *testing.T) {
	stdout, _, err := runGrade(t, "1.6\t\\boxed{1.59}\n", "--format", "tsv", "--rel-tol", "0.01")
	if err != nil || stdout != "1\n" {
		t.Errorf("--rel-tol 0.01: %q %v", stdout, err)
	}
	if _, _, err := runGrade(t, "", "--rel-tol", "-1"); err == nil || !strings.Contains(err.Error(), "rel_tol") {
		t.Errorf("bad --rel-tol: %v", err)
	}
}

func TestGradeBadInput(t *testing.T) {
	for _, c := range []struct{ in, format, want string }{
		{"{\"gold\": \"1\", \"response\": \"1\"}\n{\"gold\": 1}\n", "jsonl", `stdin:2: missing field "response"`},
		{"{\"response\": \"1\"}\n", "jsonl", `stdin:1: missing field "gold"`},
		{"not json\n", "jsonl", "stdin:1: invalid character"},
		{"{\"gold\": [1], \"response\": \"1\"}\n", "jsonl", `stdin:1: field "gold"`},
		{"1\t1\n2 2\n", "tsv", "stdin:2: no tab"},
	} {
		_, _, err := runGrade(t, c.in, "--format", c.format)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("input %q: error %v, want %q", c.in, err, c.want)
		}
	}
	if _, _, err := runGrade(t, "", "--format", "csv"); err == nil || !strings.Contains(err.Error(), "--format") {
		t.Errorf("--format csv: %v", err)
	}
	if _, _, err := runGrade(t, "", filepath.Join(t.TempDir(), "missing.jsonl")); err == nil || !strings.Contains(err.Error(), "missing.jsonl") {
		t.Errorf("missing file: %v", err)
	}
}
