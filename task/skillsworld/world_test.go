package skillsworld

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
)

// The world written to a directory reads through the pipeline's loaders
// unchanged: MATH rows, the catalogue, the skill map joined to every
// question, and a validation split with nothing excluded.
func TestWriteLoadsAsMATH(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	train, err := problems.LoadMATH(filepath.Join(dir, TrainFile))
	if err != nil {
		t.Fatal(err)
	}
	test, err := problems.LoadMATH(filepath.Join(dir, TestFile))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, k := range Skills() {
		total += len(k.Items())
	}
	if len(train)+len(test) != total || len(test) < total/3 {
		t.Fatalf("train %d + test %d questions, want %d in all with about 40%% test", len(train), len(test), total)
	}
	cat, err := problems.LoadCatalogue(filepath.Join(dir, SkillsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(cat) != 3 || len(cat["arithmetic"]) != 2 || len(cat["counting"]) != 2 || len(cat["comparison"]) != 2 {
		t.Fatalf("catalogue %v: want arithmetic, counting and comparison with two skills each", cat)
	}
	rows, err := problems.LoadSkillMap(filepath.Join(dir, SkillMapFile))
	if err != nil {
		t.Fatal(err)
	}
	all := append(append([]problems.Problem(nil), train...), test...)
	unknown, err := problems.AttachSkills(all, cat, rows, problems.DropUnknown)
	if err != nil || len(unknown) > 0 {
		t.Fatalf("attach skills: %v, unknown %v", err, unknown)
	}
	seen := map[string]bool{}
	perSkill := map[string][2]int{}
	for i, p := range all {
		if len(p.Skills) != 1 || !cat.Has(p.Subject, p.Skills[0]) {
			t.Fatalf("%s (%s): skills %v", p.ID, p.Subject, p.Skills)
		}
		it, ok := Parse(p.Question)
		if !ok || it.Skill.Name != p.Skills[0] || it.Skill.Subject.Key != p.Subject {
			t.Fatalf("%s: %q parses as %v, labelled %v", p.ID, p.Question, it.Skill, p.Skills)
		}
		if p.Answer != it.Answer || !mathgrade.Grade(p.Solution, p.Answer).Correct {
			t.Fatalf("%s: answer %q, solution %q, want %q", p.ID, p.Answer, p.Solution, it.Answer)
		}
		if p.Level < 1 || p.Level > 5 {
			t.Fatalf("%s: level %d", p.ID, p.Level)
		}
		if seen[p.Question] {
			t.Fatalf("%q appears twice (train and test must not share a question)", p.Question)
		}
		seen[p.Question] = true
		c := perSkill[p.Skills[0]]
		if i < len(train) {
			c[0]++
		} else {
			c[1]++
		}
		perSkill[p.Skills[0]] = c
	}
	for _, k := range Skills() {
		if c := perSkill[k.Name]; c[0] == 0 || c[1] == 0 {
			t.Errorf("skill %s: %d train and %d test questions, want some of each", k.Name, c[0], c[1])
		}
	}

	cfg := problems.DefaultConfig()
	cfg.Dir, cfg.Validation, cfg.Exclude = dir, 60, nil
	val, rest, err := problems.SplitMATH(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(val) != 60 || len(val)+len(rest) != len(test) {
		t.Fatalf("split: %d validation + %d test of %d", len(val), len(rest), len(test))
	}

	// The same seed writes the same bytes.
	again := t.TempDir()
	if err := Write(again, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{TrainFile, TestFile, SkillsFile, SkillMapFile} {
		a, _ := os.ReadFile(filepath.Join(dir, f))
		b, _ := os.ReadFile(filepath.Join(again, f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two writes with one seed", f)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		q, skill, answer string
	}{
		{"What is 3 + 5?", "addition", "8"},
		{" Which number is less, 9 or 4? ", "smaller_number", "4"},
		{"What is 7 doubled?", "doubling", "14"},
		{"Which is larger, 2 or 6?", "larger_number", "6"},
		{"What number precedes 4?", "predecessor", "3"},
		{"What number follows 9?", "successor", "10"},
	} {
		it, ok := Parse(tc.q)
		if !ok || it.Skill.Name != tc.skill || it.Answer != tc.answer {
			t.Errorf("Parse(%q) = %v %q %v, want %s %s", tc.q, it.Skill, it.Answer, ok, tc.skill, tc.answer)
		}
	}
	for _, q := range []string{"What is 12 + 5?", "What is 9 - 4?", "Which is larger, 4 or 4?", "What number comes before 0?", "Is 7 prime?"} {
		if it, ok := Parse(q); ok {
			t.Errorf("Parse(%q) = %s, want not of this world", q, it.Skill.Name)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, f := range []float64{0, 1, -0.5} {
		if err := (Config{TestFraction: f}).Validate(); err == nil {
			t.Errorf("test fraction %g accepted", f)
		}
	}
	if err := Write(t.TempDir(), Config{TestFraction: 2}); err == nil {
		t.Error("Write accepted a bad config")
	}
}
