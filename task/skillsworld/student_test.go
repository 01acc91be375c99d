package skillsworld

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
	"github.com/statjob/statjob/train/tokenizer"
)

// loadStudent writes the shipped base student to a folder and loads it as
// the pipeline does.
func loadStudent(t testing.TB) (*model.Model, *tokenizer.Tokenizer) {
	t.Helper()
	dir := t.TempDir()
	if err := WriteStudent(dir); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := storage.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := model.Load(context.Background(), st, "")
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.VocabSize < tok.VocabSize() {
		t.Fatalf("model vocabulary %d < tokenizer's %d", m.Config.VocabSize, tok.VocabSize())
	}
	return m, tok
}

// heldOut returns up to n test questions of each named skill.
func heldOut(t testing.TB, n int, skills ...string) []Item {
	t.Helper()
	_, test, err := Split(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	var out []Item
	for _, it := range test {
		if slices.Contains(skills, it.Skill.Name) && count[it.Skill.Name] < n {
			count[it.Skill.Name]++
			out = append(out, it)
		}
	}
	return out
}

// The shipped student has the profile the demo needs: it answers held-out
// questions of a skill it was trained on and fails those of a skill it
// never saw.
func TestStudentSkillProfile(t *testing.T) {
	m, tok := loadStudent(t)
	b, err := backend.New("")
	if err != nil {
		t.Fatal(err)
	}
	items := heldOut(t, 8, "addition", "predecessor", "successor", "smaller_number")
	scores, texts, err := Measure(b, m, tok, items, 24)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range items {
		t.Logf("%-11s %-48q → %q", it.Skill.Name, it.Question, texts[i])
	}
	for _, k := range []string{"addition", "predecessor"} {
		if a := scores[k].Accuracy(); a < 0.75 {
			t.Errorf("trained skill %s: accuracy %.2f on %d held-out questions, want >= 0.75", k, a, scores[k].Total)
		}
	}
	for _, k := range []string{"successor", "smaller_number"} {
		if a := scores[k].Accuracy(); a > 0.25 {
			t.Errorf("unseen skill %s: accuracy %.2f on %d held-out questions, want <= 0.25", k, a, scores[k].Total)
		}
	}
}

// BenchmarkTargetedSFT fine-tunes the shipped student with the demo spec's
// sft section on what STAT-Sel would select for its weak skills (training
// questions of the unseen skills and of their related skills, with the
// teacher's solutions) and reports the accuracy on the test split per
// skill, before and after:
//
//	go test -run '^$' -bench TargetedSFT -benchtime 1x ./task/skillsworld/
func BenchmarkTargetedSFT(b *testing.B) {
	raw, err := os.ReadFile("../../examples/demo.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var spec struct {
		SFT yaml.Node `yaml:"sft"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		b.Fatal(err)
	}
	cfg := sft.DefaultConfig()
	if err := spec.SFT.Decode(&cfg); err != nil {
		b.Fatal(err)
	}
	train, test, err := Split(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	targets := slices.Clone(Unseen)
	for _, u := range Unseen {
		targets = append(targets, FindSkill(u).Related)
	}
	// STAT-Sel draws the same number of questions for every (difficult
	// question, missing skill) pair: equal shares of the targets.
	bySkill := map[string][]Item{}
	for _, it := range train {
		bySkill[it.Skill.Name] = append(bySkill[it.Skill.Name], it)
	}
	var convs []sft.Conversation
	for i := 0; len(convs) < 300; i++ {
		items := bySkill[targets[i%len(targets)]]
		it := items[(i/len(targets))%len(items)]
		convs = append(convs, sft.Conversation{Messages: Conversation(it), Source: it.Question})
	}
	for b.Loop() {
		m, tok := loadStudent(b)
		be, err := backend.New("")
		if err != nil {
			b.Fatal(err)
		}
		before, _, err := Measure(be, m, tok, test, 24)
		if err != nil {
			b.Fatal(err)
		}
		data, err := sft.Tokenize(convs, tok, tokenizer.ChatOptions{}, cfg)
		if err != nil {
			b.Fatal(err)
		}
		fwd, err := sft.ModelForward(m.Config, cfg)
		if err != nil {
			b.Fatal(err)
		}
		tr, err := sft.NewTrainer(cfg, be, m.Ctx, fwd)
		if err != nil {
			b.Fatal(err)
		}
		st, err := storage.Open(context.Background(), b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		res, err := (&sft.Run{Trainer: tr, Train: data, Store: st}).Run(context.Background())
		st.Close()
		if err != nil {
			b.Fatal(err)
		}
		if err := sft.MergeLoRA(m, cfg); err != nil { // as the sft stage exports it
			b.Fatal(err)
		}
		after, texts, err := Measure(be, m, tok, test, 24)
		if err != nil {
			b.Fatal(err)
		}
		names := make([]string, 0, len(before))
		for n := range before {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Printf("%d examples, %d steps, final loss %.4f\n", len(convs), res.Steps, res.Final.Loss)
		for _, n := range names {
			fmt.Printf("%-14s %2d/%2d → %2d/%2d\n", n, before[n].Correct, before[n].Total, after[n].Correct, after[n].Total)
		}
		shown := map[string]int{}
		for i, it := range test {
			if shown[it.Skill.Name] < 3 {
				shown[it.Skill.Name]++
				fmt.Printf("after: %-14s %q → %q\n", it.Skill.Name, it.Question, texts[i])
			}
		}
	}
}
