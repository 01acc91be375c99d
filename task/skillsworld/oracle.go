package skillsworld

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/statjob/statjob/task/mathgrade"
	"github.com/statjob/statjob/teacher"
)

// Oracle is a teacher that knows the world, served over OpenAI's chat
// completions wire format (POST /v1/chat/completions), so the pipeline
// reaches it through its real OpenAI client. It recognises STAT's five
// prompts (package teacher) by their system text (Solve, which has none,
// by its instruction), reads the fields it needs from the user turn, and
// answers correctly: as JSON when the request carries a JSON schema
// (response_format json_schema), else in the prompt's tagged format.
//
//   - ProposeSkills: the subject's skills.
//   - LabelSkills: the question's skill.
//   - Diagnose: the judge (graded against the reference), a reason, and the
//     question's skill with its related skill (same subject).
//   - WriteQuestion: a question of the skill that is not in the world's
//     test split (evaluation stays held out), chosen by a hash of the
//     request (messages and seed), so a request always gets the same one.
//   - Solve: the worked solution, ending in \boxed{}.
//
// A request it does not recognise gets HTTP 400 naming what was missing.
type Oracle struct {
	calls atomic.Int64
	fresh map[string][]string // per skill, the questions it may write
}

// NewOracle returns the teacher of the world split by c.
func NewOracle(c Config) (*Oracle, error) {
	train, _, err := Split(c)
	if err != nil {
		return nil, err
	}
	o := &Oracle{fresh: map[string][]string{}}
	for _, it := range train {
		o.fresh[it.Skill.Name] = append(o.fresh[it.Skill.Name], it.Question)
	}
	return o, nil
}

// Calls counts the chat completions answered.
func (o *Oracle) Calls() int { return int(o.calls.Load()) }

type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Seed           *int64 `json:"seed"`
	ResponseFormat *struct {
		Type string `json:"type"`
	} `json:"response_format"`
}

// text returns a message's content: a string or a list of text parts.
func text(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	json.Unmarshal(raw, &parts)
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Text)
	}
	return b.String()
}

// ServeHTTP answers POST …/chat/completions.
func (o *Oracle) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
		writeError(w, http.StatusNotFound, "no route "+r.Method+" "+r.URL.Path)
		return
	}
	var req chatRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "request body: "+err.Error())
		return
	}
	var system, user string
	for _, m := range req.Messages {
		switch m.Role {
		case "system", "developer":
			system += text(m.Content)
		case "user":
			if user == "" { // the prompt itself; a re-ask adds the complaint after it
				user = text(m.Content)
			}
		}
	}
	seed := ""
	if req.Seed != nil {
		seed = fmt.Sprint(*req.Seed)
	}
	structured := req.ResponseFormat != nil && req.ResponseFormat.Type == "json_schema"
	reply, err := o.answer(system, user, seed, structured)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	o.calls.Add(1)
	in := (len(system)+len(user))/4 + 1
	out := len(reply)/4 + 1
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"id": fmt.Sprintf("chatcmpl-%d", o.calls.Load()), "object": "chat.completion",
		"created": time.Now().Unix(), "model": req.Model,
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
			"message": map[string]any{"role": "assistant", "content": reply}}},
		"usage": map[string]any{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out},
	})
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": msg, "type": "invalid_request_error", "code": nil}})
}

var (
	subjectRe   = regexp.MustCompile(`(?m)^Subject: (.+)$`)
	questionRe  = regexp.MustCompile(`(?s)Question: (.+?)\n(?:\nChoose|Reference answer:)`)
	referenceRe = regexp.MustCompile(`(?m)^Reference answer: (.*)$`)
	responseRe  = regexp.MustCompile(`(?s)Student's response:\n(.*)\n\nFirst judge`)
	skillRe     = regexp.MustCompile(`(?m)^Skill: (.+)$`)
	proposeRe   = regexp.MustCompile(`questions from the subject "(.+?)":`)
	listRe      = regexp.MustCompile(`(?m)^- (.+)$`)
	solveSuffix = "\nPlease reason step by step, and put your final answer within \\boxed{}."
)

func field(re *regexp.Regexp, s, name string) (string, error) {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return "", fmt.Errorf("no %s in the prompt", name)
	}
	return strings.TrimSpace(m[1]), nil
}

func parseQuestion(user string) (Item, error) {
	q, err := field(questionRe, user, "question")
	if err != nil {
		return Item{}, err
	}
	it, ok := Parse(q)
	if !ok {
		return Item{}, fmt.Errorf("question %q is not of this world", q)
	}
	return it, nil
}

// skillsReply writes a list of skills as {"skills": [...]} or <skill> tags.
func skillsReply(skills []string, structured bool) string {
	if structured {
		b, _ := json.Marshal(map[string]any{"skills": skills})
		return string(b)
	}
	var b strings.Builder
	for _, s := range skills {
		fmt.Fprintf(&b, "<skill>%s</skill>\n", s)
	}
	return b.String()
}

// answer is the oracle's reply to one prompt.
func (o *Oracle) answer(system, user, seed string, structured bool) (string, error) {
	switch system {
	case teacher.ProposeSkills.System:
		name, err := field(proposeRe, user, "subject")
		if err != nil {
			return "", err
		}
		s := FindSubject(name)
		if s == nil {
			return "", fmt.Errorf("subject %q is not of this world", name)
		}
		var names []string
		for _, k := range s.Skills {
			names = append(names, k.Name)
		}
		return skillsReply(names, structured), nil

	case teacher.LabelSkills.System:
		it, err := parseQuestion(user)
		if err != nil {
			return "", err
		}
		return skillsReply([]string{it.Skill.Name}, structured), nil

	case teacher.Diagnose.System:
		it, err := parseQuestion(user)
		if err != nil {
			return "", err
		}
		ref, err := field(referenceRe, user, "reference answer")
		if err != nil {
			return "", err
		}
		resp, err := field(responseRe, user, "student's response")
		if err != nil {
			return "", err
		}
		g := mathgrade.Grade(resp, ref)
		judge, reason := "incorrect", fmt.Sprintf("The question needs %s; the answer is %s", it.Skill.Name, it.Answer)
		switch {
		case g.Correct:
			judge, reason = "correct", reason+", and the response reaches it."
		case g.Extracted == "":
			reason += ", but the response gives no final answer."
		default:
			reason += fmt.Sprintf(", but the response answers %s.", g.Extracted)
		}
		missing := []string{it.Skill.Name, it.Skill.Related}
		if structured {
			b, _ := json.Marshal(map[string]any{"judge": judge, "reason": reason, "missing_skills": missing})
			return string(b), nil
		}
		return fmt.Sprintf("<judge>%s</judge>\n<reason>%s</reason>\n%s", judge, reason, skillsReply(missing, false)), nil

	case teacher.WriteQuestion.System:
		name, err := field(skillRe, user, "skill")
		if err != nil {
			return "", err
		}
		k := FindSkill(name)
		if k == nil {
			return "", fmt.Errorf("skill %q is not of this world", name)
		}
		qs := o.fresh[k.Name]
		q := qs[pick(seed+"\x00"+user, len(qs))]
		if structured {
			b, _ := json.Marshal(map[string]string{"question": q})
			return string(b), nil
		}
		return "<question>" + q + "</question>", nil

	case teacher.Solve.System:
		if user == teacher.Ping.User {
			return "OK", nil // statjob check
		}
		q, ok := strings.CutSuffix(strings.TrimSpace(user), solveSuffix)
		if !ok {
			return "", errors.New("unrecognised prompt: no system message of STAT's prompts and not a solve request")
		}
		it, ok := Parse(q)
		if !ok {
			return "I cannot solve this question.", nil
		}
		return it.Solution, nil
	}
	return "", errors.New("unrecognised prompt: the system message is none of STAT's prompts")
}
