package stages

import (
	"context"
	"fmt"
	"strings"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/task/problems"
	"github.com/statjob/statjob/train/backend"
	"github.com/statjob/statjob/train/grpo"
	"github.com/statjob/statjob/train/model"
	"github.com/statjob/statjob/train/sft"
)

// grpoVersion is bumped when the stage's output changes for the same inputs.
const grpoVersion = "grpo v1"

// GRPOArm is the evaluated arm of <arm> after GRPO: evaluate/grpo/<arm>
// evaluates the student of stage grpo/<arm>, and the report shows it as arm
// grpo/<arm>.
func GRPOArm(arm string) string { return "grpo/" + arm }

// grpoStage runs GRPO (train/grpo) on the MATH train questions with a
// correctness reward, starting from sft/<arm>'s student (or the base
// student for arm "base"), checkpointing into its own folder so a preempted
// job resumes, and exports the merged student under StudentDir, as sft does.
type grpoStage struct {
	arm string
}

// NewGRPO returns the grpo/<arm> stage: it fine-tunes sft/<arm>'s student,
// or the base student when arm is "base", with the grpo section's recipe.
func NewGRPO(arm string) job.Stage { return &grpoStage{arm: arm} }

func (s *grpoStage) Name() string { return GRPOArm(s.arm) }

// from is the stage whose student GRPO starts from ("" for the base).
func (s *grpoStage) from() string {
	if s.arm == "base" {
		return ""
	}
	return "sft/" + s.arm
}

func (s *grpoStage) Needs() []string {
	if f := s.from(); f != "" {
		return []string{f}
	}
	return nil
}

// Fingerprint covers the recipe, the student, data and grade sections (the
// prompt, the questions and the reward), the prompt template and the
// starting student.
func (s *grpoStage) Fingerprint(spec *job.Spec, up map[string]string) (string, error) {
	canon, err := spec.Canonical("grpo", "student", "data", "grade")
	if err != nil {
		return "", err
	}
	who := up[s.from()]
	if s.from() == "" {
		if who, err = studentHash(context.Background(), spec.Section("student").(*StudentConfig)); err != nil {
			return "", err
		}
	}
	return job.Hash(grpoVersion, generateVersion, QuestionPrompt, canon, who)
}

func (s *grpoStage) Run(ctx context.Context, env *job.Env) (job.Metrics, error) {
	sec := sectionsOf(env.Spec())
	cfg := *env.Spec().Section("grpo").(*grpo.Config)
	train, err := problems.LoadMATH(mathTrainPath(env.Spec()))
	if err != nil {
		return nil, fmt.Errorf("grpo questions: %w", err)
	}
	held := sec.student
	if cfg.LoRA.Rank == 0 {
		held = held.trained() // every weight is trained
	}
	student, err := openStudent(ctx, env, held, s.from())
	if err != nil {
		return nil, err
	}
	grader, err := mathgrade.New(*sec.grade)
	if err != nil {
		return nil, fmt.Errorf("grade: %w", err)
	}
	// The prompt and the grading are those of probe and evaluate.
	r := &responder{student: student, grader: grader, chat: sec.student.ChatOptions(), sc: sec.student}
	qs := make([]grpo.Question, len(train))
	for i, p := range train {
		ids, err := r.prompt(p.Question)
		if err != nil {
			return nil, fmt.Errorf("question %s: %w", p.ID, err)
		}
		qs[i] = grpo.Question{ID: p.ID, Prompt: ids, Answer: p.Answer}
	}
	reward := func(q grpo.Question, res model.Result) float64 {
		if r.sample(res, q.Answer).Correct {
			return 1
		}
		return 0
	}
	be, err := backend.New(sec.student.Backend)
	if err != nil {
		return nil, fmt.Errorf("student.backend: %w", err)
	}
	defer be.Finalize() // free the device for the stages that run next in this process
	tr, err := grpo.NewTrainer(cfg, be, student.Model, student.StopIDs())
	if err != nil {
		return nil, fmt.Errorf("student %s: %w", student.Where, err)
	}
	run := &grpo.Run{Trainer: tr, Questions: qs, Reward: reward, Store: env.Store(), Prefix: env.Key(""),
		Log: sftLogWriter{env.Log()}}
	res, err := run.Run(ctx)
	if err != nil {
		return nil, fmt.Errorf("grpo %s on MATH train: %w", student.Where, err)
	}
	if !res.Done {
		return nil, fmt.Errorf("grpo %s: stopped after %d of %d steps", student.Where, res.Steps, cfg.Steps)
	}
	if err := writeRows(ctx, env, MetricsFile, res.Metrics); err != nil {
		return nil, err
	}
	dtype := sftExportDType(student.Model.Config)
	merge := sft.Config{LoRA: cfg.LoRA, Seed: cfg.Seed} // what merging the adapters reads
	if err := sft.Export(ctx, student.Model, merge, sftSink{env}, StudentDir, dtype, student.Files); err != nil {
		return nil, err
	}
	m := job.Metrics{"steps": res.Steps, "updates": res.Updates, "questions": len(qs), "export_dtype": dtype}
	if n := len(res.Metrics); n > 0 {
		first, last := res.Metrics[0], res.Metrics[n-1]
		m["first_reward"], m["final_reward"] = first.RewardMean, last.RewardMean
		sum, signal := 0.0, 0.0
		for _, x := range res.Metrics {
			sum += x.TokensPerSec
			signal += x.SignalFraction
		}
		m["tokens_per_s"], m["signal_fraction"] = sum/float64(n), signal/float64(n)
		if cfg.KLCoef > 0 {
			m["final_kl"] = last.KL
		}
	}
	if res.ResumedFrom != "" {
		m["resumed_from"] = strings.TrimPrefix(res.ResumedFrom, env.Key(""))
	}
	return m, nil
}
