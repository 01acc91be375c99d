// Package problems loads the math problem sets (MATH, MATH500, GSM8K,
// AIME24/25, AMC23, Minerva, OlympiadBench) into one Problem type, joins
// the reference skill map, and draws deterministic, decontaminated splits.
//
// Every loader reads JSONL; a line that does not parse or lacks a required
// field is an error naming the file and line. Nothing is silently dropped
// (blank lines are not records).
//
// Gold answers: MATH and Minerva take the last \boxed{} of the solution;
// MATH500 its answer field; GSM8K the text after "####" without thousands
// separators; AIME and AMC the answer field as written (AMC's 27.0 stays
// 27.0, AIME24's "025" stays "025": the grader equates them with 27 and 25);
// OlympiadBench joins a multi-answer final_answer list with ", ", which the
// grader reads as an unordered list. IDs are MATH's unique_id for MATH and
// MATH500 (so MATH500 can be excluded from MATH splits) and
// "<set>/<id or line>" elsewhere.
//
// Splits are drawn by hashing (seed, ID), so they do not depend on file
// order; by default the validation split of MATH test excludes MATH500.
// Skill-map rows naming a skill outside the subject's catalogue list are
// reported by AttachSkills and kept or dropped by Config.UnknownSkills; a
// row whose subject is not its problem's, or a repeated row, is an error.
package problems

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/statjob/statjob/task/mathgrade"
)

// Problem is one question with its gold answer.
type Problem struct {
	// ID is unique within a benchmark: MATH's unique_id
	// ("test/algebra/1.json"), else "<benchmark>/<id or line>".
	ID        string `json:"id"`
	Benchmark string `json:"benchmark"`
	Question  string `json:"question"`
	// Answer is the gold answer as LaTeX. For OlympiadBench problems with
	// several answers they are joined with ", " (graded as an unordered list).
	Answer   string `json:"answer"`
	Solution string `json:"solution,omitempty"`
	// Subject is the skill catalogue's key for MATH problems
	// ("counting_and_probability"); for other sets the set's own label
	// (Minerva's course, OlympiadBench's subfield), or "".
	Subject string `json:"subject,omitempty"`
	// Level is 1–5 for MATH; 0 when unknown or not graded by level.
	Level  int      `json:"level,omitempty"`
	Skills []string `json:"skills,omitempty"`
	// Unit is OlympiadBench's unit of the answer, if any.
	Unit string `json:"unit,omitempty"`
}

// Benchmark names, as Load accepts them.
const (
	MATH          = "math"
	MATH500       = "math500"
	GSM8K         = "gsm8k"
	AIME24        = "aime24"
	AIME25        = "aime25"
	AMC23         = "amc23"
	Minerva       = "minerva"
	OlympiadBench = "olympiadbench"
)

// Benchmarks lists every set Load reads, with its file under the data
// directory.
var Benchmarks = map[string]string{
	MATH:          "math/test.jsonl",
	MATH500:       "math500/test.jsonl",
	GSM8K:         "gsm8k/test.jsonl",
	AIME24:        "aime24/test.jsonl",
	AIME25:        "aime25/test.jsonl",
	AMC23:         "amc23/test.jsonl",
	Minerva:       "minerva/test.jsonl",
	OlympiadBench: "olympiadbench/test.jsonl",
}

// ErrUnknownBenchmark is returned by Load for a name not in Benchmarks.
var ErrUnknownBenchmark = errors.New("unknown benchmark")

// Load reads benchmark name from the JSONL file at path.
func Load(name, path string) ([]Problem, error) {
	switch name {
	case MATH:
		return LoadMATH(path)
	case MATH500:
		return LoadMATH500(path)
	case GSM8K:
		return LoadGSM8K(path)
	case AIME24:
		return LoadAIME24(path)
	case AIME25:
		return LoadAIME25(path)
	case AMC23:
		return LoadAMC23(path)
	case Minerva:
		return LoadMinerva(path)
	case OlympiadBench:
		return LoadOlympiadBench(path)
	}
	return nil, fmt.Errorf("load %s: %w %q", path, ErrUnknownBenchmark, name)
}

// LoadDir reads benchmark name from its usual file under the data directory.
func LoadDir(name, dataDir string) ([]Problem, error) {
	rel, ok := Benchmarks[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownBenchmark, name)
	}
	return Load(name, filepath.Join(dataDir, rel))
}

// readJSONL decodes each non-blank line of path into a new T and hands it
// to fn with its 1-based line number; an error from either names file:line.
func readJSONL[T any](path string, fn func(line int, row *T) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err // the *PathError names the file
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		row := new(T)
		if err := json.Unmarshal(b, row); err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if err := fn(line, row); err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

func missing(field string) error { return fmt.Errorf("missing field %q", field) }

// SubjectKey maps a MATH subject name ("Counting & Probability") to the
// skill catalogue's key ("counting_and_probability").
func SubjectKey(name string) string {
	s := strings.ToLower(strings.TrimSpace(name))
	s = strings.ReplaceAll(s, "&", "and")
	return strings.Join(strings.Fields(s), "_")
}

// MATHRow is one line of MATH's JSONL layout (data/math), as LoadMATH reads it.
type MATHRow struct {
	UniqueID string `json:"unique_id"`
	Problem  string `json:"problem"`
	Level    string `json:"level"`
	Type     string `json:"type"`
	Solution string `json:"solution"`
}

// LoadMATH reads MATH train or test: the answer is the last \boxed{} of the
// solution; "Level ?" (two train rows) is level 0.
func LoadMATH(path string) ([]Problem, error) {
	var out []Problem
	err := readJSONL(path, func(_ int, r *MATHRow) error {
		switch {
		case r.UniqueID == "":
			return missing("unique_id")
		case r.Problem == "":
			return missing("problem")
		case r.Type == "":
			return missing("type")
		}
		ans, rule := mathgrade.Extract(r.Solution)
		if rule != mathgrade.RuleBoxed {
			return fmt.Errorf("solution of %s has no \\boxed{} answer", r.UniqueID)
		}
		lvl, err := parseLevel(r.Level)
		if err != nil {
			return err
		}
		out = append(out, Problem{ID: r.UniqueID, Benchmark: MATH, Question: r.Problem, Answer: ans,
			Solution: r.Solution, Subject: SubjectKey(r.Type), Level: lvl})
		return nil
	})
	return out, err
}

func parseLevel(s string) (int, error) {
	t := strings.TrimPrefix(s, "Level ")
	if t == "?" {
		return 0, nil
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 1 || n > 5 {
		return 0, fmt.Errorf("level %q is not \"Level 1\"..\"Level 5\" or \"Level ?\"", s)
	}
	return n, nil
}

type math500Row struct {
	UniqueID string `json:"unique_id"`
	Problem  string `json:"problem"`
	Solution string `json:"solution"`
	Answer   string `json:"answer"`
	Subject  string `json:"subject"`
	Level    int    `json:"level"`
}

// LoadMATH500 reads MATH500; IDs are MATH's unique_id, so the set can be
// excluded from MATH splits.
func LoadMATH500(path string) ([]Problem, error) {
	var out []Problem
	err := readJSONL(path, func(_ int, r *math500Row) error {
		switch {
		case r.UniqueID == "":
			return missing("unique_id")
		case r.Problem == "":
			return missing("problem")
		case r.Answer == "":
			return missing("answer")
		case r.Level < 1 || r.Level > 5:
			return fmt.Errorf("level %d is not 1..5", r.Level)
		}
		out = append(out, Problem{ID: r.UniqueID, Benchmark: MATH500, Question: r.Problem, Answer: r.Answer,
			Solution: r.Solution, Subject: SubjectKey(r.Subject), Level: r.Level})
		return nil
	})
	return out, err
}

type gsmRow struct {
	Question string `json:"question"`
	Answer   string `json:"answer"`
}

// LoadGSM8K reads GSM8K: the answer follows "#### " with thousands
// separators removed.
func LoadGSM8K(path string) ([]Problem, error) {
	var out []Problem
	err := readJSONL(path, func(line int, r *gsmRow) error {
		if r.Question == "" {
			return missing("question")
		}
		i := strings.LastIndex(r.Answer, "####")
		if i < 0 {
			return fmt.Errorf("answer has no \"####\" line")
		}
		ans := strings.ReplaceAll(strings.TrimSpace(r.Answer[i+4:]), ",", "")
		if ans == "" {
			return fmt.Errorf("empty answer after \"####\"")
		}
		out = append(out, Problem{ID: fmt.Sprintf("%s/%d", GSM8K, line), Benchmark: GSM8K, Question: r.Question,
			Answer: ans, Solution: strings.TrimSpace(r.Answer[:i])})
		return nil
	})
	return out, err
}

type aimeRow struct {
	ID       json.RawMessage `json:"id"`
	Problem  string          `json:"problem"`
	Solution string          `json:"solution"`
	Answer   json.RawMessage `json:"answer"`
}

// scalar renders a JSON string or number as answer text: 27.0 stays 27.0
// (the grader equates it with 27), "025" stays "025".
func scalar(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return strings.TrimSpace(s), nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", fmt.Errorf("%s is neither a string nor a number", raw)
	}
	return n.String(), nil
}

func loadScalarSet(path, name string) ([]Problem, error) {
	var out []Problem
	err := readJSONL(path, func(line int, r *aimeRow) error {
		if r.Problem == "" {
			return missing("problem")
		}
		ans, err := scalar(r.Answer)
		if err != nil {
			return fmt.Errorf("field \"answer\": %w", err)
		}
		if ans == "" {
			return missing("answer")
		}
		id, err := scalar(r.ID)
		if err != nil || id == "" {
			id = strconv.Itoa(line)
		}
		out = append(out, Problem{ID: name + "/" + id, Benchmark: name, Question: r.Problem, Answer: ans, Solution: r.Solution})
		return nil
	})
	return out, err
}

// LoadAIME24 reads AIME 2024 (string answers such as "025").
func LoadAIME24(path string) ([]Problem, error) { return loadScalarSet(path, AIME24) }

// LoadAIME25 reads AIME 2025 (integer answers).
func LoadAIME25(path string) ([]Problem, error) { return loadScalarSet(path, AIME25) }

// LoadAMC23 reads AMC 2023 (float answers such as 27.0).
func LoadAMC23(path string) ([]Problem, error) { return loadScalarSet(path, AMC23) }

type minervaRow struct {
	Problem  string `json:"problem"`
	Solution string `json:"solution"`
	Type     string `json:"type"`
	Idx      *int   `json:"idx"`
}

// LoadMinerva reads Minerva math: the answer is the last \boxed{} of the
// solution.
func LoadMinerva(path string) ([]Problem, error) {
	var out []Problem
	err := readJSONL(path, func(line int, r *minervaRow) error {
		if r.Problem == "" {
			return missing("problem")
		}
		ans, rule := mathgrade.Extract(r.Solution)
		if rule != mathgrade.RuleBoxed {
			return fmt.Errorf("solution has no \\boxed{} answer")
		}
		id := line
		if r.Idx != nil {
			id = *r.Idx
		}
		out = append(out, Problem{ID: fmt.Sprintf("%s/%d", Minerva, id), Benchmark: Minerva, Question: r.Problem,
			Answer: ans, Solution: r.Solution, Subject: r.Type})
		return nil
	})
	return out, err
}

type olympiadRow struct {
	ID          json.RawMessage `json:"id"`
	Subfield    string          `json:"subfield"`
	Context     *string         `json:"context"`
	Question    string          `json:"question"`
	Solution    []string        `json:"solution"`
	FinalAnswer []string        `json:"final_answer"`
	Multiple    bool            `json:"is_multiple_answer"`
	Unit        *string         `json:"unit"`
}

// LoadOlympiadBench reads OlympiadBench: final_answer is a list; several
// entries (is_multiple_answer) are joined with ", " and graded as an
// unordered list. The context, when present, is prefixed to the question.
func LoadOlympiadBench(path string) ([]Problem, error) {
	var out []Problem
	err := readJSONL(path, func(line int, r *olympiadRow) error {
		if r.Question == "" {
			return missing("question")
		}
		if len(r.FinalAnswer) == 0 {
			return missing("final_answer")
		}
		ans := make([]string, len(r.FinalAnswer))
		for i, a := range r.FinalAnswer {
			ans[i] = strings.TrimSpace(a)
			if ans[i] == "" {
				return fmt.Errorf("final_answer[%d] is empty", i)
			}
		}
		id, err := scalar(r.ID)
		if err != nil || id == "" {
			id = strconv.Itoa(line)
		}
		q := r.Question
		if r.Context != nil && *r.Context != "" {
			q = *r.Context + "\n\n" + q
		}
		p := Problem{ID: OlympiadBench + "/" + id, Benchmark: OlympiadBench, Question: q,
			Answer: strings.Join(ans, ", "), Solution: strings.Join(r.Solution, "\n\n"), Subject: r.Subfield}
		if r.Unit != nil {
			p.Unit = *r.Unit
		}
		out = append(out, p)
		return nil
	})
	return out, err
}
