package skillsworld

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/statjob/statjob/task/problems"
)

// Subject is a group of skills, as MATH's subjects are.
type Subject struct {
	// Name is the display name written in the "type" field ("Number
	// Sense"); Key is its catalogue key (problems.SubjectKey(Name)).
	Name, Key string
	Skills    []*Skill
}

// Skill is one kind of question: a few phrasings over small integers and
// the worked solution that answers them.
type Skill struct {
	// Name is the catalogue name ("successor").
	Name    string
	Subject *Subject
	// Related is the other skill of its subject, which a teacher names
	// with this one as missing (the one its solutions build on, or its
	// mirror image).
	Related string
	// Phrasings are the question's wordings, each with one %d per operand.
	Phrasings []string
	// Operands lists every operand tuple the skill asks about.
	Operands [][]int
	// Solve writes the worked solution and the final answer.
	Solve func(x []int) (solution string, answer int)

	patterns []*regexp.Regexp // Phrasings as anchored regexps, in order
}

// Item is one question of the world with its solution.
type Item struct {
	Skill    *Skill
	Operands []int
	Question string
	Solution string // ends in \boxed{Answer}
	Answer   string
	Level    int // 1–5, by the largest operand
}

func boxed(text string, answer int) (string, int) {
	return fmt.Sprintf("%s. \\boxed{%d}", text, answer), answer
}

func pairs(keep func(a, b int) bool) [][]int {
	var out [][]int
	for a := range 10 {
		for b := range 10 {
			if keep(a, b) {
				out = append(out, []int{a, b})
			}
		}
	}
	return out
}

func singles(lo, hi int) [][]int {
	var out [][]int
	for n := lo; n <= hi; n++ {
		out = append(out, []int{n})
	}
	return out
}

// World is the demo's small math world: three subjects of two skills,
// questions over single digits with one-line solutions.
var World = newWorld()

func newWorld() []*Subject {
	arith := &Subject{Name: "Arithmetic"}
	count := &Subject{Name: "Counting"}
	compare := &Subject{Name: "Comparison"}
	arith.Skills = []*Skill{
		{Name: "addition", Related: "doubling",
			Phrasings: []string{"What is %d + %d?"},
			Operands:  pairs(func(a, b int) bool { return true }),
			Solve: func(x []int) (string, int) {
				return boxed(fmt.Sprintf("%d + %d = %d", x[0], x[1], x[0]+x[1]), x[0]+x[1])
			}},
		{Name: "doubling", Related: "addition",
			Phrasings: []string{"What is twice %d?", "What is double %d?", "What is %d doubled?",
				"What is two times %d?", "What is %d plus itself?", "Double %d. What do you get?"},
			Operands: singles(0, 9),
			Solve: func(x []int) (string, int) {
				return boxed(fmt.Sprintf("%d + %d = %d", x[0], x[0], 2*x[0]), 2*x[0])
			}},
	}
	count.Skills = []*Skill{
		{Name: "predecessor", Related: "successor",
			Phrasings: []string{"What number comes before %d?", "What is one less than %d?",
				"What is the predecessor of %d?", "What number precedes %d?", "What is %d minus one?",
				"Count down one from %d. What number do you reach?"},
			Operands: singles(1, 9),
			Solve: func(x []int) (string, int) {
				return boxed(fmt.Sprintf("%d - 1 = %d", x[0], x[0]-1), x[0]-1)
			}},
		{Name: "successor", Related: "predecessor",
			Phrasings: []string{"What number comes after %d?", "What is one more than %d?",
				"What is the successor of %d?", "What number follows %d?", "What is %d plus one?",
				"Count up one from %d. What number do you reach?"},
			Operands: singles(0, 9),
			Solve: func(x []int) (string, int) {
				return boxed(fmt.Sprintf("%d + 1 = %d", x[0], x[0]+1), x[0]+1)
			}},
	}
	compare.Skills = []*Skill{
		{Name: "larger_number", Related: "smaller_number",
			Phrasings: []string{"Which is larger, %d or %d?", "Which number is greater, %d or %d?"},
			Operands:  pairs(func(a, b int) bool { return a != b }),
			Solve: func(x []int) (string, int) {
				hi, lo := max(x[0], x[1]), min(x[0], x[1])
				return boxed(fmt.Sprintf("%d > %d", hi, lo), hi)
			}},
		{Name: "smaller_number", Related: "larger_number",
			Phrasings: []string{"Which is smaller, %d or %d?", "Which number is less, %d or %d?"},
			Operands:  pairs(func(a, b int) bool { return a != b }),
			Solve: func(x []int) (string, int) {
				hi, lo := max(x[0], x[1]), min(x[0], x[1])
				return boxed(fmt.Sprintf("%d < %d", lo, hi), lo)
			}},
	}
	subjects := []*Subject{arith, count, compare}
	for _, s := range subjects {
		s.Key = problems.SubjectKey(s.Name)
		for _, k := range s.Skills {
			k.Subject = s
			for _, p := range k.Phrasings {
				re := "^" + strings.ReplaceAll(regexp.QuoteMeta(p), "%d", `(\d+)`) + "$"
				k.patterns = append(k.patterns, regexp.MustCompile(re))
			}
		}
	}
	return subjects
}

// Skills lists every skill of the world, subject by subject.
func Skills() []*Skill {
	var out []*Skill
	for _, s := range World {
		out = append(out, s.Skills...)
	}
	return out
}

// FindSkill returns the skill of that name, or nil.
func FindSkill(name string) *Skill {
	for _, k := range Skills() {
		if k.Name == name {
			return k
		}
	}
	return nil
}

// FindSubject returns the subject whose key or display name is name, or nil.
func FindSubject(name string) *Subject {
	key := problems.SubjectKey(name)
	for _, s := range World {
		if s.Key == key {
			return s
		}
	}
	return nil
}

// Catalogue is the world's skill list per subject key.
func Catalogue() problems.Catalogue {
	c := problems.Catalogue{}
	for _, s := range World {
		for _, k := range s.Skills {
			c[s.Key] = append(c[s.Key], k.Name)
		}
	}
	return c
}

// Item returns the question of phrasing p over operands x.
func (k *Skill) Item(p int, x []int) Item {
	args := make([]any, len(x))
	lvl := 0
	for i, v := range x {
		args[i] = v
		lvl = max(lvl, v)
	}
	sol, ans := k.Solve(x)
	return Item{Skill: k, Operands: x, Question: fmt.Sprintf(k.Phrasings[p], args...), Solution: sol,
		Answer: strconv.Itoa(ans), Level: min(5, 1+lvl/2)}
}

// Items lists every question of the skill: each phrasing over each operand
// tuple.
func (k *Skill) Items() []Item {
	var out []Item
	for p := range k.Phrasings {
		for _, x := range k.Operands {
			out = append(out, k.Item(p, x))
		}
	}
	return out
}

// Parse recognises a question of the world (surrounding space ignored) and
// returns it with its solution.
func Parse(question string) (Item, bool) {
	q := strings.TrimSpace(question)
	for _, k := range Skills() {
		for p, re := range k.patterns {
			m := re.FindStringSubmatch(q)
			if m == nil {
				continue
			}
			x := make([]int, len(m)-1)
			for i, s := range m[1:] {
				x[i], _ = strconv.Atoi(s)
			}
			if slices.ContainsFunc(k.Operands, func(o []int) bool { return slices.Equal(o, x) }) {
				return k.Item(p, x), true
			}
		}
	}
	return Item{}, false
}

// Config sets how the world's questions are split.
type Config struct {
	// Seed orders the questions of each skill before the split.
	Seed uint64
	// TestFraction is the share of each skill's questions written to
	// math/test.jsonl (the rest go to math/train.jsonl).
	TestFraction float64
}

// DefaultConfig puts 40% of every skill's questions in the test split.
func DefaultConfig() Config { return Config{Seed: 1, TestFraction: 0.4} }

// Validate names the bad field.
func (c Config) Validate() error {
	if !(c.TestFraction > 0 && c.TestFraction < 1) {
		return fmt.Errorf("test_fraction: %g, want in (0, 1)", c.TestFraction)
	}
	return nil
}

// Split divides every skill's questions into train and test: each skill's
// questions are shuffled by the seed and the first TestFraction of them
// are test, so train and test never share a question.
func Split(c Config) (train, test []Item, err error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	for _, k := range Skills() {
		items := k.Items()
		h := fnv.New64a()
		h.Write([]byte(k.Name))
		rng := rand.New(rand.NewPCG(c.Seed, h.Sum64()))
		rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
		n := int(float64(len(items))*c.TestFraction + 0.5)
		test = append(test, items[:n]...)
		train = append(train, items[n:]...)
	}
	return train, test, nil
}

// Files under the world's directory, laid out as the repository's data/.
const (
	TrainFile    = "math/train.jsonl"
	TestFile     = "math/test.jsonl"
	SkillsFile   = "skills/math_skills.json"
	SkillMapFile = "skills/math_skill_map.jsonl"
)

type mapRow struct {
	UniqueID string   `json:"unique_id"`
	Subject  string   `json:"subject"`
	Skills   []string `json:"skills"`
}

// Write writes the world under dir in the MATH data layout:
// math/train.jsonl and math/test.jsonl (unique_id, problem, level, type,
// solution), skills/math_skills.json and skills/math_skill_map.jsonl (a
// row for every train and test question).
func Write(dir string, c Config) error {
	train, test, err := Split(c)
	if err != nil {
		return fmt.Errorf("skills world: %w", err)
	}
	var skillMap []mapRow
	for _, part := range []struct {
		name, file string
		items      []Item
	}{{"train", TrainFile, train}, {"test", TestFile, test}} {
		n := map[string]int{}
		rows := make([]any, len(part.items))
		for i, it := range part.items {
			subj := it.Skill.Subject
			id := fmt.Sprintf("%s/%s/%d.json", part.name, subj.Key, n[subj.Key])
			n[subj.Key]++
			rows[i] = problems.MATHRow{UniqueID: id, Problem: it.Question, Level: fmt.Sprintf("Level %d", it.Level),
				Type: subj.Name, Solution: it.Solution}
			skillMap = append(skillMap, mapRow{UniqueID: id, Subject: subj.Key, Skills: []string{it.Skill.Name}})
		}
		if err := writeJSONL(filepath.Join(dir, part.file), rows); err != nil {
			return err
		}
	}
	rows := make([]any, len(skillMap))
	for i := range skillMap {
		rows[i] = skillMap[i]
	}
	if err := writeJSONL(filepath.Join(dir, SkillMapFile), rows); err != nil {
		return err
	}
	cat, err := json.MarshalIndent(map[string]any{"subjects": Catalogue()}, "", " ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, SkillsFile), append(cat, '\n'))
}

func writeJSONL(path string, rows []any) error {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return writeFile(path, []byte(b.String()))
}

// writeFile writes data to path whole: a temporary file renamed into place.
// A file that already holds data is left untouched, so that a store which
// tells files apart by more than their bytes (a local store's generation)
// sees the same file.
func writeFile(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(fmt.Errorf("write %s: %w", path, err), os.Remove(tmp))
	}
	return nil
}

// pick chooses one of n deterministically from key: the same key always
// picks the same index.
func pick(key string, n int) int {
	h := fnv.New64a()
	h.Write([]byte(key))
	return int(h.Sum64() % uint64(n))
}
