package stages

import (
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/teacher"
	"github.com/statjob/statjob/train/tokenizer"
)

// The files stages exchange, by the stage that writes them. Rows of a
// .jsonl file are one JSON object per line.
const (
	// skills: {"subjects": {subject: [skill, ...]}}, the shape of
	// data/skills/math_skills.json.
	CatalogueFile = "catalogue.json"
	// label: the training questions, problems.Problem rows with Skills set
	// (a question the labeller could not label has none).
	LabelledFile = "train.jsonl"
	// probe: the validation questions with the student's samples, Response
	// rows. evaluate/<s> writes one such file per benchmark,
	// "<benchmark>.jsonl".
	ResponsesFile = "responses.jsonl"
	// difficulty: the questions the student finds difficult, Difficult rows.
	DifficultFile = "difficult.jsonl"
	// diagnose: one Diagnosed row per difficult question, and the
	// Missing-Skill-Profile (Profile).
	DiagnosesFile = "diagnoses.jsonl"
	ProfileFile   = "profile.json"
	// dataset/<s>: the training set, Example rows (the SFT JSONL format:
	// train/sft.ReadJSONL reads them).
	DatasetFile = "train.jsonl"
	// sft/<s>: the fine-tuned student, a Hugging Face directory
	// (config.json, model.safetensors, tokenizer.json,
	// tokenizer_config.json) under this prefix, and the per-step metrics.
	StudentDir  = "student"
	MetricsFile = "metrics.jsonl"
	// evaluate/<s>: the scores, an Evaluation.
	EvaluationFile = "evaluation.json"
	// report: the page and its machine-readable summary.
	ReportHTML = "report.html"
	ReportMD   = "report.md"
)

// QuestionPrompt turns a question into the user turn the student sees,
// alike in training (every Example's user message), probing and evaluation:
// the paper's 0-shot instruction; %s is the question.
const QuestionPrompt = "%s\n\nPlease reason step by step, and put your final answer within \\boxed{}."

// Sample is one student response to a question.
type Sample struct {
	Text    string `json:"text"`
	Answer  string `json:"answer"` // the extracted final answer, "" when none
	Correct bool   `json:"correct"`
	Tokens  int    `json:"tokens"`  // generated tokens
	Stopped bool   `json:"stopped"` // ended on a stop token, not cut at max_new_tokens
}

// Response is a question with the student's samples, in sample order
// (sample i is drawn with its own seed, so a rerun draws the same).
type Response struct {
	problems.Problem
	Samples []Sample `json:"samples"`
}

// Difficult is a question the student finds difficult, with why and the
// response the teacher will read.
type Difficult struct {
	Response
	// Accuracy is the fraction of samples graded correct.
	Accuracy float64 `json:"accuracy"`
	// Why says which rule marked it ("accuracy 0.20 < 0.50").
	Why string `json:"why"`
	// Shown is the index in Samples of the response the teacher diagnoses
	// (the first incorrect one).
	Shown int `json:"shown"`
}

// Diagnosed is the teacher's diagnosis of one difficult question.
type Diagnosed struct {
	ID        string            `json:"id"`
	Subject   string            `json:"subject"`
	Diagnosis teacher.Diagnosis `json:"diagnosis"`
	// Error is why no diagnosis was kept (an unparseable reply, a skill not
	// in the list after the re-asks); Raw is the teacher's last reply then.
	Error string `json:"error,omitempty"`
	Raw   string `json:"raw,omitempty"`
}

// Profile is the Missing-Skill-Profile: how often each skill was named
// missing over the difficult questions.
type Profile struct {
	Questions int `json:"questions"` // difficult questions diagnosed
	Failed    int `json:"failed"`    // of which no diagnosis was kept
	// JudgedCorrect are the diagnosed questions whose shown response the
	// teacher judged correct after all: their skills are not counted.
	JudgedCorrect int          `json:"judged_correct"`
	Skills        []SkillCount `json:"skills"` // most frequent first, then by subject and name
}

// SkillCount is one entry of a Profile.
type SkillCount struct {
	Subject string `json:"subject"`
	Skill   string `json:"skill"`
	Count   int    `json:"count"`
}

// Example is one training example: the SFT JSONL format (messages) plus
// where it came from.
type Example struct {
	Messages []tokenizer.Message `json:"messages"`
	// Source is the training question's ID, or "synthetic" for a question
	// the teacher wrote.
	Source  string `json:"source"`
	Subject string `json:"subject,omitempty"`
	Skill   string `json:"skill,omitempty"` // the missing skill it targets (STAT)
	// For is the difficult question whose diagnosis asked for it (STAT).
	For string `json:"for,omitempty"`
}

// Evaluation is evaluate/<s>'s scores: one entry per benchmark.
type Evaluation struct {
	Stage      string                     `json:"stage"` // "evaluate/<s>"
	Model      string                     `json:"model"` // the student's location
	Benchmarks map[string]BenchmarkResult `json:"benchmarks"`
}

// BenchmarkResult is one benchmark's accuracy, overall and by group.
type BenchmarkResult struct {
	mathgrade.Summary
	// Interval is the bootstrap 95% interval of pass@1.
	Interval  mathgrade.Interval           `json:"interval"`
	BySubject map[string]mathgrade.Summary `json:"by_subject,omitempty"`
	BySkill   map[string]mathgrade.Summary `json:"by_skill,omitempty"`
	ByLevel   map[string]mathgrade.Summary `json:"by_level,omitempty"`
}
