package teacher

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Replies come as JSON (schema mode) or tagged text (tags mode); the parsers
// accept both, so a stage does not care which mode the spec chose.

// Tagged returns the contents of every <tag>…</tag> in text, trimmed.
func Tagged(text, tag string) []string {
	re := regexp.MustCompile(`(?s)<` + regexp.QuoteMeta(tag) + `>(.*?)</` + regexp.QuoteMeta(tag) + `>`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		out = append(out, strings.TrimSpace(m[1]))
	}
	return out
}

// jsonObject decodes the JSON object in text (tolerating a ``` fence).
func jsonObject(text string, v any) (bool, error) {
	s := strings.TrimSpace(text)
	if strings.HasPrefix(s, "```") {
		s = strings.TrimPrefix(strings.TrimPrefix(s, "```json"), "```")
		s = strings.TrimSuffix(strings.TrimSpace(s), "```")
		s = strings.TrimSpace(s)
	}
	if !strings.HasPrefix(s, "{") {
		return false, nil
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return true, fmt.Errorf("reply is not valid JSON: %v", err)
	}
	return true, nil
}

// normSkill compares skill names loosely: case, spaces, hyphens and
// underscores do not matter.
func normSkill(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '_', '`', '"', '\'', '.':
			return -1
		}
		return r
	}, s)
}

// ValidateSkills maps names onto the allowed list (spelt as in the list),
// drops duplicates, and fails naming every skill that is not on it, or when
// the count is outside [minN, maxN] (maxN 0: no upper bound; allowed nil:
// any name).
func ValidateSkills(names, allowed []string, minN, maxN int) ([]string, error) {
	canon := map[string]string{}
	for _, a := range allowed {
		canon[normSkill(a)] = a
	}
	var out, unknown []string
	seen := map[string]bool{}
	for _, n := range names {
		k := normSkill(n)
		if k == "" || seen[k] {
			continue
		}
		seen[k] = true
		if allowed == nil {
			out = append(out, strings.TrimSpace(n))
		} else if c, ok := canon[k]; ok {
			out = append(out, c)
		} else {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("skills not in the list: %q; use only skills from the list, spelt exactly", unknown)
	}
	if len(out) < minN || (maxN > 0 && len(out) > maxN) {
		if maxN > 0 {
			return nil, fmt.Errorf("got %d skills, want %d to %d", len(out), minN, maxN)
		}
		return nil, fmt.Errorf("got %d skills, want at least %d", len(out), minN)
	}
	return out, nil
}

// skillsOf reads the skills of a {"skills": [...]} object or <skill> tags.
func skillsOf(text, field string) ([]string, error) {
	var obj map[string]json.RawMessage
	if isJSON, err := jsonObject(text, &obj); isJSON {
		if err != nil {
			return nil, err
		}
		var names []string
		if err := json.Unmarshal(obj[field], &names); err != nil {
			return nil, fmt.Errorf("field %q is not a list of strings", field)
		}
		return names, nil
	}
	names := Tagged(text, "skill")
	if len(names) == 0 {
		return nil, errors.New("no <skill>…</skill> tags found")
	}
	return names, nil
}

// ParseSkills parses a ProposeSkills reply (any names, 1 to 30).
func ParseSkills(text string) ([]string, error) {
	names, err := skillsOf(text, "skills")
	if err != nil {
		return nil, err
	}
	return ValidateSkills(names, nil, 1, 30)
}

// ParseLabel returns the ParseFunc of a LabelSkills reply: 1 to 5 skills,
// all from the list.
func ParseLabel(allowed []string) ParseFunc[[]string] {
	return func(text string) ([]string, error) {
		names, err := skillsOf(text, "skills")
		if err != nil {
			return nil, err
		}
		return ValidateSkills(names, allowed, 1, 5)
	}
}

// Diagnosis is the teacher's reading of one failed student response.
type Diagnosis struct {
	Correct bool     `json:"correct"` // the teacher's judge
	Reason  string   `json:"reason"`
	Missing []string `json:"missing_skills"` // 2–3 skills, all from the list
}

// ParseDiagnosis returns the ParseFunc of a Diagnose reply.
func ParseDiagnosis(allowed []string) ParseFunc[Diagnosis] {
	return func(text string) (Diagnosis, error) {
		var d Diagnosis
		var raw struct {
			Judge   string   `json:"judge"`
			Reason  string   `json:"reason"`
			Missing []string `json:"missing_skills"`
		}
		isJSON, err := jsonObject(text, &raw)
		if err != nil {
			return d, err
		}
		if !isJSON {
			if j := Tagged(text, "judge"); len(j) > 0 {
				raw.Judge = j[0]
			}
			if r := Tagged(text, "reason"); len(r) > 0 {
				raw.Reason = r[0]
			}
			raw.Missing = Tagged(text, "skill")
		}
		switch strings.ToLower(strings.TrimSpace(raw.Judge)) {
		case "correct":
			d.Correct = true
		case "incorrect":
		default:
			return d, fmt.Errorf("judge is %q, want correct or incorrect", raw.Judge)
		}
		d.Reason = raw.Reason
		if d.Missing, err = ValidateSkills(raw.Missing, allowed, 2, 3); err != nil {
			return d, err
		}
		return d, nil
	}
}

// ParseQuestion parses a WriteQuestion reply.
func ParseQuestion(text string) (string, error) {
	var obj struct {
		Question string `json:"question"`
	}
	isJSON, err := jsonObject(text, &obj)
	if err != nil {
		return "", err
	}
	if !isJSON {
		if q := Tagged(text, "question"); len(q) > 0 {
			obj.Question = q[0]
		}
	}
	if strings.TrimSpace(obj.Question) == "" {
		return "", errors.New("no question found (want <question>…</question> or {\"question\": …})")
	}
	return strings.TrimSpace(obj.Question), nil
}

// Boxed returns the contents of the last \boxed{…} in text, braces balanced.
func Boxed(text string) (string, error) {
	i := strings.LastIndex(text, `\boxed{`)
	if i < 0 {
		return "", errors.New(`no \boxed{} final answer`)
	}
	depth, start := 1, i+len(`\boxed{`)
	for j := start; j < len(text); j++ {
		switch text[j] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return strings.TrimSpace(text[start:j]), nil
			}
		}
	}
	return "", errors.New(`unbalanced braces in \boxed{}`)
}
