package problems

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
)

// Catalogue is the skill list per subject key.
type Catalogue map[string][]string

// LoadCatalogue reads {"subjects": {subject: [skill, ...]}}.
func LoadCatalogue(path string) (Catalogue, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var doc struct {
		Subjects Catalogue `json:"subjects"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if len(doc.Subjects) == 0 {
		return nil, fmt.Errorf("parse %s: field \"subjects\" is missing or empty", path)
	}
	for s, list := range doc.Subjects {
		if len(list) == 0 {
			return nil, fmt.Errorf("parse %s: subject %q has no skills", path, s)
		}
	}
	return doc.Subjects, nil
}

// Has reports whether skill is in subject's list.
func (c Catalogue) Has(subject, skill string) bool {
	for _, s := range c[subject] {
		if s == skill {
			return true
		}
	}
	return false
}

// SkillRow is one row of the skill map.
type SkillRow struct {
	UniqueID string   `json:"unique_id"`
	Subject  string   `json:"subject"`
	Skills   []string `json:"skills"`
	Line     int      `json:"-"`
}

// LoadSkillMap reads the question → skills map (JSONL).
func LoadSkillMap(path string) ([]SkillRow, error) {
	var out []SkillRow
	err := readJSONL(path, func(line int, r *SkillRow) error {
		switch {
		case r.UniqueID == "":
			return missing("unique_id")
		case r.Subject == "":
			return missing("subject")
		case len(r.Skills) == 0:
			return missing("skills")
		}
		r.Line = line
		out = append(out, *r)
		return nil
	})
	return out, err
}

// UnknownSkill is a map row naming a skill that is not in its subject's
// catalogue list.
type UnknownSkill struct {
	UniqueID, Subject, Skill string
	Line                     int
}

// SkillPolicy says what to do with a map row's skill that is not in the
// subject's list.
type SkillPolicy string

// Policies for skills outside the catalogue.
const (
	KeepUnknown SkillPolicy = "keep" // attach it anyway (it is still reported)
	DropUnknown SkillPolicy = "drop" // leave it out (reported)
)

// AttachSkills sets Skills on each problem with a row in the map (matched
// by ID) and reports every skill not in the subject's list; policy says
// whether such skills are kept. Problems without a row keep no skills. A
// row whose subject is not its problem's, or a second row for one ID, is
// an error naming the map line. Results are in map order.
func AttachSkills(ps []Problem, cat Catalogue, rows []SkillRow, policy SkillPolicy) ([]UnknownSkill, error) {
	if policy != KeepUnknown && policy != DropUnknown {
		return nil, fmt.Errorf("skill policy %q is not %q or %q", policy, KeepUnknown, DropUnknown)
	}
	byID := make(map[string]*SkillRow, len(rows))
	var unknown []UnknownSkill
	for i := range rows {
		r := &rows[i]
		if _, ok := cat[r.Subject]; !ok {
			return nil, fmt.Errorf("skill map line %d: subject %q is not in the catalogue", r.Line, r.Subject)
		}
		if prev, dup := byID[r.UniqueID]; dup {
			return nil, fmt.Errorf("skill map line %d: %s already mapped on line %d", r.Line, r.UniqueID, prev.Line)
		}
		byID[r.UniqueID] = r
		for _, s := range r.Skills {
			if !cat.Has(r.Subject, s) {
				unknown = append(unknown, UnknownSkill{UniqueID: r.UniqueID, Subject: r.Subject, Skill: s, Line: r.Line})
			}
		}
	}
	for i := range ps {
		r, ok := byID[ps[i].ID]
		if !ok {
			continue
		}
		if r.Subject != ps[i].Subject {
			return nil, fmt.Errorf("skill map line %d: %s is in subject %q, not %q", r.Line, r.UniqueID, ps[i].Subject, r.Subject)
		}
		var skills []string
		for _, s := range r.Skills {
			if policy == KeepUnknown || cat.Has(r.Subject, s) {
				skills = append(skills, s)
			}
		}
		ps[i].Skills = skills
	}
	sort.SliceStable(unknown, func(i, j int) bool { return unknown[i].Line < unknown[j].Line })
	return unknown, nil
}
