package teacher

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"
)

// Prompt is a named, versioned prompt template. Its Hash covers everything
// that shapes the messages it renders, so a stage that puts it in its
// fingerprint is redone when the wording changes. Bump Version with every
// change of meaning.
type Prompt struct {
	Name    string
	Version int
	System  string
	// User is a text/template over the data the stage passes to Render.
	User string
	// Schema is the JSON schema of the reply in structured mode.
	Schema map[string]any
	// Tagged tells the model the tagged-text reply format, for endpoints
	// without constrained decoding.
	Tagged string
}

// ID is name@version, the form that enters the cache key.
func (p *Prompt) ID() string { return fmt.Sprintf("%s@%d", p.Name, p.Version) }

// Hash is the hex sha256 of the prompt's name, version, texts and schema.
func (p *Prompt) Hash() string {
	schema, _ := json.Marshal(p.Schema)
	h := sha256.New()
	for _, s := range []string{p.ID(), p.System, p.User, string(schema), p.Tagged} {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Request renders p for this teacher, in the structured-output mode its
// Config names.
func (t *Teacher) Request(p *Prompt, data any, params Params, sample int) (*Request, error) {
	return p.Request(data, params, sample, t.cfg.Structured == StructuredSchema)
}

// Request renders the prompt over data into a request. structured selects
// the JSON-schema form (Config.Structured == "schema") over tagged text.
func (p *Prompt) Request(data any, params Params, sample int, structured bool) (*Request, error) {
	tmpl, err := template.New(p.ID()).Option("missingkey=error").Parse(p.User)
	if err != nil {
		return nil, fmt.Errorf("prompt %s: %w", p.ID(), err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("prompt %s: %w", p.ID(), err)
	}
	req := &Request{Params: params, Sample: sample, Prompt: p.ID()}
	if p.System != "" {
		req.Messages = append(req.Messages, Message{Role: System, Content: p.System})
	}
	user := b.String()
	switch {
	case structured && p.Schema != nil:
		req.Schema = p.Schema
		user += "\n\nReply with a JSON object that follows the given schema."
	case p.Tagged != "":
		user += "\n\n" + p.Tagged
	}
	req.Messages = append(req.Messages, Message{Role: User, Content: user})
	return req, nil
}

// strList is an array of strings. Counts are said in the description, not
// as minItems/maxItems, which not every strict-schema endpoint accepts; the
// parsers enforce them (and re-ask).
func strList(desc string) map[string]any {
	return map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "description": desc}
}

func object(props map[string]any, required ...string) map[string]any {
	return map[string]any{"type": "object", "properties": props, "required": required,
		"additionalProperties": false}
}

// STAT's prompts. Their data:
//
//	ProposeSkills: {Subject string; Questions []string}
//	LabelSkills:   {Subject, Question string; Skills []string}
//	Diagnose:      {Subject, Question, Reference, Response string; Skills []string}
//	WriteQuestion: {Subject, Skill string; Examples []string}
//	Solve:         {Question string}
var (
	ProposeSkills = &Prompt{Name: "propose_skills", Version: 1,
		System: "You are an expert teacher who organises a subject into the distinct skills a student needs.",
		User: `Here are questions from the subject "{{.Subject}}":
{{range $i, $q := .Questions}}
Question {{$i}}: {{$q}}
{{end}}
List the distinct skills needed to solve questions like these. Each skill is a short lowercase
phrase with words joined by underscores (for example "solving_linear_equations"). Give between
5 and 30 skills, none a duplicate of another.`,
		Schema: object(map[string]any{"skills": strList("5 to 30 skill names")}, "skills"),
		Tagged: "Put each skill in its own <skill>…</skill> tag and write nothing else.",
	}

	LabelSkills = &Prompt{Name: "label_skills", Version: 1,
		System: "You label math questions with the skills needed to solve them.",
		User: `Subject: {{.Subject}}
Question: {{.Question}}

Choose the skills needed to solve this question, at most five, only from this list:
{{range .Skills}}- {{.}}
{{end}}`,
		Schema: object(map[string]any{"skills": strList("1 to 5 skills from the list, most important first")}, "skills"),
		Tagged: "Put each chosen skill, spelt exactly as in the list, in its own <skill>…</skill> tag.",
	}

	Diagnose = &Prompt{Name: "diagnose", Version: 1,
		System: "You are a careful teacher who finds exactly which skills a student's solution is missing.",
		User: `Subject: {{.Subject}}
Question: {{.Question}}
Reference answer: {{.Reference}}

Student's response:
{{.Response}}

First judge whether the student's final answer is correct. Then explain briefly where the
reasoning goes wrong. Then name the two or three skills the student is missing, only from this
list:
{{range .Skills}}- {{.}}
{{end}}`,
		Schema: object(map[string]any{
			"judge":          map[string]any{"type": "string", "enum": []string{"correct", "incorrect"}},
			"reason":         map[string]any{"type": "string"},
			"missing_skills": strList("two or three skills from the list"),
		}, "judge", "reason", "missing_skills"),
		Tagged: "Answer as <judge>correct or incorrect</judge> <reason>…</reason> and two or three " +
			"<skill>…</skill> tags, each skill spelt exactly as in the list.",
	}

	WriteQuestion = &Prompt{Name: "write_question", Version: 1,
		System: "You write new, self-contained math questions that exercise one skill.",
		User: `Subject: {{.Subject}}
Skill: {{.Skill}}

Example questions that use this skill:
{{range $i, $q := .Examples}}
Example {{$i}}: {{$q}}
{{end}}
Write one new question of similar difficulty that especially stresses the skill "{{.Skill}}".
It must have a single, checkable final answer. Do not solve it.`,
		Schema: object(map[string]any{"question": map[string]any{"type": "string"}}, "question"),
		Tagged: "Put the question, and nothing else, in <question>…</question>.",
	}

	// Solve asks for the paper's answer format; its reply is free text parsed
	// with Boxed.
	Solve = &Prompt{Name: "solve", Version: 1,
		User: `{{.Question}}
Please reason step by step, and put your final answer within \boxed{}.`,
	}
)

// Ping is the one short request statjob check sends to prove the endpoint,
// the model name and the key; any reply will do.
var Ping = &Prompt{Name: "ping", Version: 1, User: "Reply with the single word OK."}

// Prompts lists STAT's prompts by name.
var Prompts = map[string]*Prompt{
	ProposeSkills.Name: ProposeSkills, LabelSkills.Name: LabelSkills, Diagnose.Name: Diagnose,
	WriteQuestion.Name: WriteQuestion, Solve.Name: Solve,
}
