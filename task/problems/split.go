package problems

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Config sets how problems are split and how skills are joined.
type Config struct {
	// Dir is the data directory: one folder per benchmark, laid out as
	// Benchmarks says (the repository's data/).
	Dir string `yaml:"dir"`
	// Seed orders the problems; the same seed and set give the same split.
	Seed uint64 `yaml:"seed"`
	// Validation is the size of the validation split (paper: 1000 of MATH test).
	Validation int `yaml:"validation"`
	// Exclude names evaluation sets (Benchmarks keys) whose problems must
	// not enter the validation split (decontamination); they stay in the
	// test split. Default: math500, a subset of MATH test.
	Exclude []string `yaml:"exclude"`
	// UnknownSkills says what AttachSkills does with a map row's skill that
	// is not in its subject's catalogue list: keep (default) or drop. Either
	// way it is reported.
	UnknownSkills SkillPolicy `yaml:"unknown_skills"`
}

// DefaultConfig is the paper's 1,000 validation problems, seed 0, with
// MATH500 kept out of validation, and unknown skills kept.
func DefaultConfig() Config {
	return Config{Dir: "data", Seed: 0, Validation: 1000, Exclude: []string{MATH500}, UnknownSkills: KeepUnknown}
}

// Validate names the first bad field.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("dir: empty; name the data directory")
	}
	if c.Validation < 0 {
		return fmt.Errorf("validation: %d is negative", c.Validation)
	}
	for i, b := range c.Exclude {
		if _, ok := Benchmarks[b]; !ok {
			return fmt.Errorf("exclude[%d]: %w %q", i, ErrUnknownBenchmark, b)
		}
	}
	if c.UnknownSkills != KeepUnknown && c.UnknownSkills != DropUnknown {
		return fmt.Errorf("unknown_skills: %q is not %q or %q", c.UnknownSkills, KeepUnknown, DropUnknown)
	}
	return nil
}

// SplitMATH loads MATH test and the sets named in c.Exclude from dataDir
// and splits MATH test into validation and test.
func SplitMATH(dataDir string, c Config) (validation, test []Problem, err error) {
	if err := c.Validate(); err != nil {
		return nil, nil, fmt.Errorf("split: %w", err)
	}
	ps, err := LoadDir(MATH, dataDir)
	if err != nil {
		return nil, nil, err
	}
	var excl []string
	for _, b := range c.Exclude {
		e, err := LoadDir(b, dataDir)
		if err != nil {
			return nil, nil, err
		}
		excl = append(excl, IDs(e)...)
	}
	return Split(ps, c, excl)
}

// Split divides ps into validation and test. Each problem's place in the
// draw is a hash of (seed, ID), so the split does not depend on the input
// order, and adding a problem does not move the others. Problems whose ID
// is in exclude (the problems of c.Exclude's sets) are never drawn for
// validation. It fails when too few problems are eligible.
func Split(ps []Problem, c Config, exclude []string) (validation, test []Problem, err error) {
	if err := c.Validate(); err != nil {
		return nil, nil, fmt.Errorf("split: %w", err)
	}
	excl := make(map[string]bool, len(exclude))
	for _, id := range exclude {
		excl[id] = true
	}
	seen := make(map[string]bool, len(ps))
	type keyed struct {
		key uint64
		p   Problem
	}
	var eligible []keyed
	for _, p := range ps {
		if seen[p.ID] {
			return nil, nil, fmt.Errorf("split: duplicate problem id %q", p.ID)
		}
		seen[p.ID] = true
		if excl[p.ID] {
			continue
		}
		var buf [8]byte
		binary.LittleEndian.PutUint64(buf[:], c.Seed)
		h := sha256.Sum256(append(buf[:], p.ID...))
		eligible = append(eligible, keyed{binary.LittleEndian.Uint64(h[:8]), p})
	}
	if len(eligible) < c.Validation {
		return nil, nil, fmt.Errorf("split: validation needs %d problems but only %d are eligible (%d excluded)",
			c.Validation, len(eligible), len(ps)-len(eligible))
	}
	sort.Slice(eligible, func(i, j int) bool {
		if eligible[i].key != eligible[j].key {
			return eligible[i].key < eligible[j].key
		}
		return eligible[i].p.ID < eligible[j].p.ID
	})
	inVal := make(map[string]bool, c.Validation)
	for _, k := range eligible[:c.Validation] {
		inVal[k.p.ID] = true
		validation = append(validation, k.p)
	}
	for _, p := range ps {
		if !inVal[p.ID] {
			test = append(test, p)
		}
	}
	return validation, test, nil
}

// IDs returns the IDs of ps (e.g. MATH500's, to exclude from a split).
func IDs(ps []Problem) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}
