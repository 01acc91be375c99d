package skillsworld

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"

	"github.com/gomlx/gomlx/backends"

	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/tokenizer"
)

// The base student: a tiny Qwen2 model with the byte-level test tokenizer,
// pre-trained by cmd/pretrain (see the package doc).
//
//go:embed student
var studentFiles embed.FS

// studentRoot is the embedded directory of the base student.
const studentRoot = "student"

// Unseen are the skills the base student never saw in pre-training: the
// weaknesses STAT has to find and repair.
var Unseen = []string{"doubling", "successor", "smaller_number"}

// Trained are the skills the base student was pre-trained on.
func Trained() []*Skill {
	var out []*Skill
	for _, k := range Skills() {
		if !slices.Contains(Unseen, k.Name) {
			out = append(out, k)
		}
	}
	return out
}

// Prompt is the user turn the pipeline's stages send the student for a
// question (zero-shot, the paper's instruction).
func Prompt(question string) string {
	return fmt.Sprintf("%s\n\nPlease reason step by step, and put your final answer within \\boxed{}.", question)
}

// Conversation is the chat a student is trained on for one item.
func Conversation(it Item) []tokenizer.Message {
	return []tokenizer.Message{{Role: "user", Content: Prompt(it.Question)}, {Role: "assistant", Content: it.Solution}}
}

// WriteStudent writes the base student (config.json, model.safetensors,
// tokenizer.json, tokenizer_config.json) into dir.
func WriteStudent(dir string) error {
	entries, err := fs.ReadDir(studentFiles, studentRoot)
	if err != nil {
		return fmt.Errorf("base student: %w", err)
	}
	for _, e := range entries {
		b, err := studentFiles.ReadFile(path.Join(studentRoot, e.Name()))
		if err != nil {
			return fmt.Errorf("base student: %w", err)
		}
		if err := writeFile(filepath.Join(dir, e.Name()), b); err != nil {
			return err
		}
	}
	return nil
}

// Tokenizer loads the base student's tokenizer.
func Tokenizer() (*tokenizer.Tokenizer, error) {
	tj, err := studentFiles.ReadFile(studentRoot + "/tokenizer.json")
	if err != nil {
		return nil, err
	}
	tc, err := studentFiles.ReadFile(studentRoot + "/tokenizer_config.json")
	if err != nil {
		return nil, err
	}
	return tokenizer.Load(bytes.NewReader(tj), bytes.NewReader(tc))
}

// TokenizerFiles returns the tokenizer files by name, for saving beside
// weights.
func TokenizerFiles() (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := studentFiles.ReadFile(studentRoot + "/" + f)
		if err != nil {
			return nil, err
		}
		files[f] = b
	}
	return files, nil
}

// Score is a student's greedy accuracy on some questions.
type Score struct {
	Correct, Total int
}

// Accuracy is Correct / Total (0 without questions).
func (s Score) Accuracy() float64 {
	if s.Total == 0 {
		return 0
	}
	return float64(s.Correct) / float64(s.Total)
}

// Measure answers every item greedily (at most maxNew new tokens) and
// grades the answers with the pipeline's grader; it returns the score per
// skill name and, in item order, the decoded responses.
func Measure(b backends.Backend, m *model.Model, tok *tokenizer.Tokenizer, items []Item, maxNew int) (map[string]Score, []string, error) {
	gen, err := model.NewGenerator(b, m)
	if err != nil {
		return nil, nil, err
	}
	reqs := make([]model.Request, len(items))
	for i, it := range items {
		chat, err := tok.ApplyChatTemplate([]tokenizer.Message{{Role: "user", Content: Prompt(it.Question)}},
			tokenizer.ChatOptions{AddGenerationPrompt: true})
		if err != nil {
			return nil, nil, err
		}
		reqs[i] = model.Request{Prompt: chat.IDs}
	}
	res, err := gen.Generate(reqs, model.Sampling{MaxNewTokens: maxNew, StopTokens: tok.StopIDs()})
	if err != nil {
		return nil, nil, err
	}
	scores := map[string]Score{}
	texts := make([]string, len(items))
	for i, r := range res {
		ids := r.Tokens
		if r.Stopped {
			ids = ids[:len(ids)-1]
		}
		texts[i] = tok.Decode(ids)
		s := scores[items[i].Skill.Name]
		s.Total++
		if mathgrade.Grade(texts[i], items[i].Answer).Correct {
			s.Correct++
		}
		scores[items[i].Skill.Name] = s
	}
	return scores, texts, nil
}
