package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/statjob/statjob/storage"
)

// Section is one package's block of settings in the spec (teacher.Config,
// train.Config, …). Validate names the bad field.
type Section interface {
	Validate() error
}

// Config is the job's own section ("job:" in the spec): how runners share a
// run. Durations are written like "5m" or "30s".
type Config struct {
	// LeaseTTL is how long a lease holds without a heartbeat; a runner
	// that dies leaves its work to others after this long.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// Heartbeat is how often a runner renews the leases it holds.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// Poll is how often a runner looks again at work leased by others.
	Poll time.Duration `yaml:"poll"`
	// Grace is how long in-flight work may go on after SIGTERM / SIGINT
	// before it is abandoned.
	Grace time.Duration `yaml:"grace"`
	// ProgressEvery is the interval of progress lines in batch logs.
	ProgressEvery time.Duration `yaml:"progress_every"`
}

// DefaultConfig returns the job section's defaults.
func DefaultConfig() Config {
	return Config{
		LeaseTTL:      5 * time.Minute,
		Heartbeat:     time.Minute,
		Poll:          15 * time.Second,
		Grace:         25 * time.Second,
		ProgressEvery: 30 * time.Second,
	}
}

// Validate checks the job section.
func (c *Config) Validate() error {
	switch {
	case c.LeaseTTL <= 0:
		return errors.New("lease_ttl must be positive")
	case c.Heartbeat <= 0 || c.Heartbeat >= c.LeaseTTL:
		return fmt.Errorf("heartbeat must be positive and shorter than lease_ttl (%s)", c.LeaseTTL)
	case c.Poll <= 0:
		return errors.New("poll must be positive")
	case c.Grace < 0:
		return errors.New("grace must not be negative")
	case c.ProgressEvery <= 0:
		return errors.New("progress_every must be positive")
	}
	return nil
}

// Spec is the job specification: named sections, each a package's Config,
// decoded strictly from YAML over the sections' defaults. Register every
// section before Load.
type Spec struct {
	names    []string
	sections map[string]Section
}

// NewSpec returns a spec holding the job's own sections: "storage" (where
// runs live) and "job" (leases, polling, signals). Other packages' sections
// are added with Register.
func NewSpec() *Spec {
	s := &Spec{sections: map[string]Section{}}
	st := storage.DefaultConfig("statjob-data")
	jc := DefaultConfig()
	s.Register("storage", &st)
	s.Register("job", &jc)
	return s
}

// Register adds a settings section under name. cfg must be a pointer to a
// struct with yaml tags, holding the defaults; Load and Set decode into it.
// Registering a name twice panics: it is a programming error in main.
func (s *Spec) Register(name string, cfg Section) {
	if _, dup := s.sections[name]; dup {
		panic("job: section " + name + " registered twice")
	}
	if v := reflect.ValueOf(cfg); v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic("job: section " + name + " must be a pointer to a struct")
	}
	s.names = append(s.names, name)
	s.sections[name] = cfg
}

// Section returns the registered section, or nil.
func (s *Spec) Section(name string) Section { return s.sections[name] }

// Job returns the job section.
func (s *Spec) Job() *Config { return s.sections["job"].(*Config) }

// Storage returns the storage section.
func (s *Spec) Storage() *storage.Config { return s.sections["storage"].(*storage.Config) }

// Sections lists the section names in registration order.
func (s *Spec) Sections() []string { return append([]string(nil), s.names...) }

// document is a struct type made at run time with one pointer field per
// section, so one strict yaml decode covers the whole file and reports
// unknown keys and wrong types with their lines.
func (s *Spec) document() reflect.Value {
	fields := make([]reflect.StructField, len(s.names))
	for i, n := range s.names {
		fields[i] = reflect.StructField{
			Name: "S" + strconv.Itoa(i),
			Type: reflect.TypeOf(s.sections[n]),
			Tag:  reflect.StructTag(`yaml:"` + n + `"`),
		}
	}
	doc := reflect.New(reflect.StructOf(fields))
	for i, n := range s.names {
		doc.Elem().Field(i).Set(reflect.ValueOf(s.sections[n]))
	}
	return doc
}

// Load decodes a YAML spec strictly over the current values (the defaults,
// or what an earlier Load left): an unknown key or a wrong type is an error
// naming source, line and key.
func (s *Spec) Load(source string, data []byte) error {
	doc := s.document()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(doc.Interface())
	// A section written as "name:" with nothing after it decodes to nil;
	// the defaults stay.
	for i, n := range s.names {
		if doc.Elem().Field(i).IsNil() {
			doc.Elem().Field(i).Set(reflect.ValueOf(s.sections[n]))
		}
	}
	if err == nil {
		// A second document in one file is almost always a mistake.
		var extra yaml.Node
		if dec.Decode(&extra) == nil {
			return fmt.Errorf("%s: line %d: a second YAML document; a spec is one document", source, extra.Line)
		}
		return nil
	}
	if err.Error() == "EOF" { // an empty file: all defaults
		return nil
	}
	return explainYAML(source, data, err, s.names)
}

var (
	lineRe       = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`^field (\S+) not found in type (.+)$`)
)

// explainYAML rewrites yaml's "line N: msg" errors as "source:N: key.path:
// msg", naming the key whose value sits on that line.
func explainYAML(source string, data []byte, err error, sections []string) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("%s: %w", source, err)
	}
	var root yaml.Node
	paths := map[int]string{}
	if yaml.Unmarshal(data, &root) == nil {
		keyPaths(&root, "", paths)
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		m := lineRe.FindStringSubmatch(e)
		if m == nil {
			msgs = append(msgs, source+": "+e)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := m[2]
		if u := unknownField.FindStringSubmatch(msg); u != nil && strings.HasPrefix(u[2], "struct") {
			msg = fmt.Sprintf("unknown section %q (sections: %s)", u[1], strings.Join(sections, ", "))
		} else if u != nil {
			msg = fmt.Sprintf("unknown key %q (not a field of %s)", u[1], u[2])
		}
		if p, ok := paths[line]; ok {
			msgs = append(msgs, fmt.Sprintf("%s:%d: %s: %s", source, line, p, msg))
		} else {
			msgs = append(msgs, fmt.Sprintf("%s:%d: %s", source, line, msg))
		}
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// keyPaths records, for every line that holds a mapping key or a sequence
// item, the dotted path of that key ("train.lr", "eval.sets[2]").
func keyPaths(n *yaml.Node, prefix string, out map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			keyPaths(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			if _, seen := out[k.Line]; !seen {
				out[k.Line] = p
			}
			keyPaths(v, p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			if _, seen := out[c.Line]; !seen {
				out[c.Line] = p
			}
			keyPaths(c, p, out)
		}
	}
}

// Set overrides one field: "train.lr=2e-5", "task.sets=[math,gsm8k]". The
// value is YAML, checked against the field's type like the file is.
func (s *Spec) Set(assignment string) error {
	key, value, ok := strings.Cut(assignment, "=")
	if !ok || key == "" {
		return fmt.Errorf("--set %q: want key=value, e.g. job.poll=30s", assignment)
	}
	parts := strings.Split(key, ".")
	if _, known := s.sections[parts[0]]; !known {
		return fmt.Errorf("--set %s: unknown section %q (sections: %s)", key, parts[0], strings.Join(s.names, ", "))
	}
	var val yaml.Node
	if err := yaml.Unmarshal([]byte(value), &val); err != nil {
		return fmt.Errorf("--set %s: value %q is not YAML: %w", key, value, err)
	}
	leaf := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: ""}
	if len(val.Content) == 1 {
		leaf = val.Content[0]
	}
	for i := len(parts) - 1; i >= 0; i-- {
		if parts[i] == "" {
			return fmt.Errorf("--set %s: empty key element", key)
		}
		leaf = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Value: parts[i]}, leaf,
		}}
	}
	data, err := yaml.Marshal(leaf)
	if err != nil {
		return fmt.Errorf("--set %s: %w", key, err)
	}
	if err := s.Load("--set "+key, data); err != nil {
		// The line numbers refer to the generated document, not to anything
		// the user wrote: drop them.
		msg := strings.ReplaceAll(err.Error(), "--set "+key+":2: "+key+": ", "")
		return fmt.Errorf("--set %s: %s", assignment, regexp.MustCompile(`--set [^:]*:\d+: `).ReplaceAllString(msg, ""))
	}
	return nil
}

// Validate runs every section's Validate, naming the section: an error
// that starts with a field of the section ("model: …", "embed.k: …") reads
// as the full key ("student.model: …", "dataset.embed.k: …"), one that names
// its key fully anywhere is left as it is, any other gets the section.
func (s *Spec) Validate() error {
	var errs []error
	for _, n := range s.names {
		err := s.sections[n].Validate()
		switch {
		case err == nil:
		case regexp.MustCompile(`(^|[^a-z_.])` + regexp.QuoteMeta(n) + `\.[a-z_]`).MatchString(err.Error()):
			errs = append(errs, fmt.Errorf("spec: %w", err)) // already names its field fully
		case fieldFirst.MatchString(err.Error()):
			errs = append(errs, fmt.Errorf("spec: %s.%w", n, err))
		default:
			errs = append(errs, fmt.Errorf("spec: %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// fieldFirst matches an error that starts with a field's key: "model: …",
// "embed.pooling: …", "strategies[1]: …".
var fieldFirst = regexp.MustCompile(`^[a-z_][a-z0-9_]*(\[\d+\])?(\.[a-z_][a-z0-9_]*(\[\d+\])?)*: `)

// YAML returns the resolved spec as YAML, every field written out.
func (s *Spec) YAML() ([]byte, error) {
	return yaml.Marshal(s.document().Interface())
}

// Canonical returns the resolved spec (or, with section names, just those
// sections) as canonical JSON: keys sorted, every field written out. It is
// what run.json freezes and what fingerprints hash.
func (s *Spec) Canonical(sections ...string) (json.RawMessage, error) {
	y, err := s.YAML()
	if err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(y, &m); err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	if len(sections) > 0 {
		sub := map[string]any{}
		for _, n := range sections {
			if _, ok := s.sections[n]; !ok {
				return nil, fmt.Errorf("spec has no section %q", n)
			}
			sub[n] = m[n]
		}
		m = sub
	}
	return json.Marshal(m)
}
