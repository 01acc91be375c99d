package terraform

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// schema is testdata/schema.json: `tofu providers schema -json` trimmed by
// scripts/terraform-check.sh to the types the modules use.
type schema struct {
	Resource map[string]block `json:"resource"`
	Data     map[string]block `json:"data"`
}

type block struct {
	Attributes map[string]attribute `json:"attributes"`
	BlockTypes map[string]nested    `json:"block_types"`
}

type attribute struct{ Required, Optional, Computed bool }

type nested struct {
	MinItems int   `json:"min_items"`
	MaxItems int   `json:"max_items"`
	Block    block `json:"block"`
}

// Meta-arguments Terraform itself takes in resource and data blocks.
var (
	metaAttributes = []string{"count", "for_each", "depends_on", "provider"}
	metaBlocks     = []string{"lifecycle", "provisioner", "connection"}
	// Types that would put a secret's value into the state.
	secretValueTypes = []string{"google_secret_manager_secret_version", "aws_secretsmanager_secret_version"}
)

// checkModule checks one module's files (name => content; .tf and
// .tftest.hcl) and returns every problem, each naming file:line.
func checkModule(files map[string][]byte, s schema) []error {
	var errs []error
	fail := func(r hcl.Range, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", r.Filename, r.Start.Line, fmt.Sprintf(format, args...)))
	}
	declared := map[string]bool{}
	type use struct {
		name string
		at   hcl.Range
	}
	var uses []use
	for _, name := range slices.Sorted(maps.Keys(files)) {
		src := files[name]
		f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		if diags.HasErrors() {
			errs = append(errs, fmt.Errorf("parse: %w", diags))
			continue
		}
		if !bytes.Equal(hclwrite.Format(src), src) {
			fail(hcl.Range{Filename: name, Start: hcl.InitialPos}, "not formatted (run tofu fmt)")
		}
		hclsyntax.VisitAll(f.Body.(*hclsyntax.Body), func(n hclsyntax.Node) hcl.Diagnostics {
			if t, ok := n.(*hclsyntax.ScopeTraversalExpr); ok && t.Traversal.RootName() == "var" && len(t.Traversal) > 1 {
				if a, ok := t.Traversal[1].(hcl.TraverseAttr); ok {
					uses = append(uses, use{a.Name, t.SrcRange})
				}
			}
			return nil
		})
		for _, b := range f.Body.(*hclsyntax.Body).Blocks {
			switch {
			case b.Type == "variable" && len(b.Labels) == 1:
				declared[b.Labels[0]] = true
				if d, ok := b.Body.Attributes["description"]; !ok || exprIsEmpty(d.Expr) {
					fail(b.DefRange(), "variable %q has no description", b.Labels[0])
				}
			case (b.Type == "resource" || b.Type == "data") && len(b.Labels) == 2:
				typ, where := b.Labels[0], b.Type+" "+b.Labels[0]+"."+b.Labels[1]
				types := s.Resource
				if b.Type == "data" {
					types = s.Data
				}
				bs, ok := types[typ]
				switch {
				case slices.Contains(secretValueTypes, typ):
					fail(b.DefRange(), "%s: secret values must stay out of Terraform state", where)
				case !ok:
					fail(b.DefRange(), "%s: unknown %s type %q (not in testdata/schema.json)", where, b.Type, typ)
				default:
					checkBody(b.Body, bs, where, true, fail)
				}
			case b.Type == "variables": // a test's variable values
				for _, a := range sortedAttributes(b.Body) {
					uses = append(uses, use{a.Name, a.NameRange})
				}
			}
			if b.Type == "run" { // variables {} inside a test run
				for _, inner := range b.Body.Blocks {
					if inner.Type == "variables" {
						for _, a := range sortedAttributes(inner.Body) {
							uses = append(uses, use{a.Name, a.NameRange})
						}
					}
				}
			}
		}
	}
	for _, u := range uses {
		if !declared[u.name] {
			fail(u.at, "variable %q is not declared", u.name)
		}
	}
	return errs
}

// checkBody checks a block's attributes and nested blocks against its schema.
func checkBody(body *hclsyntax.Body, s block, where string, top bool, fail func(hcl.Range, string, ...any)) {
	for _, a := range sortedAttributes(body) {
		as, ok := s.Attributes[a.Name]
		switch {
		case top && slices.Contains(metaAttributes, a.Name):
		case !ok:
			fail(a.NameRange, "%s: unknown attribute %q", where, a.Name)
		case as.Computed && !as.Optional && !as.Required:
			fail(a.NameRange, "%s: attribute %q is set by the provider, not settable", where, a.Name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Attributes)) {
		if s.Attributes[name].Required && body.Attributes[name] == nil {
			fail(body.Range(), "%s: required attribute %q is missing", where, name)
		}
	}
	count := map[string]int{}
	for _, b := range body.Blocks {
		ns, ok := s.BlockTypes[b.Type]
		switch {
		case top && slices.Contains(metaBlocks, b.Type):
		case !ok:
			fail(b.DefRange(), "%s: unknown block %q", where, b.Type)
		default:
			count[b.Type]++
			checkBody(b.Body, ns.Block, where+"."+b.Type, false, fail)
		}
	}
	for name, ns := range s.BlockTypes {
		if count[name] < ns.MinItems {
			fail(body.Range(), "%s: needs at least %d %q block(s)", where, ns.MinItems, name)
		}
		if ns.MaxItems > 0 && count[name] > ns.MaxItems {
			fail(body.Range(), "%s: at most %d %q block(s)", where, ns.MaxItems, name)
		}
	}
}

func sortedAttributes(b *hclsyntax.Body) []*hclsyntax.Attribute {
	as := make([]*hclsyntax.Attribute, 0, len(b.Attributes))
	for _, a := range b.Attributes {
		as = append(as, a)
	}
	sort.Slice(as, func(i, j int) bool { return as[i].SrcRange.Start.Byte < as[j].SrcRange.Start.Byte })
	return as
}

func exprIsEmpty(e hclsyntax.Expression) bool {
	v, diags := e.Value(nil)
	return diags.HasErrors() || !v.Type().Equals(cty.String) || v.IsNull() || v.AsString() == ""
}

func loadSchema(t *testing.T) schema {
	t.Helper()
	b, err := os.ReadFile("testdata/schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s schema
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("testdata/schema.json: %v", err)
	}
	if len(s.Resource) == 0 {
		t.Fatal("testdata/schema.json: no resource types")
	}
	return s
}

// loadModule reads a module's .tf files and its tests' .tftest.hcl files.
func loadModule(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, pattern := range []string{"*.tf", "tests/*.tftest.hcl"} {
		matches, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err != nil {
				t.Fatal(err)
			}
			files[m] = b
		}
	}
	if len(files) == 0 {
		t.Fatalf("%s: no .tf files", dir)
	}
	return files
}

func TestModules(t *testing.T) {
	s := loadSchema(t)
	for _, dir := range []string{"gcp", "aws"} {
		t.Run(dir, func(t *testing.T) {
			for _, err := range checkModule(loadModule(t, dir), s) {
				t.Error(err)
			}
		})
	}
}

// TestCheckerCatchesMistakes proves each check fails on a bad snippet, with
// the file and line of the mistake.
func TestCheckerCatchesMistakes(t *testing.T) {
	s := loadSchema(t)
	const variables = "variable \"bucket\" {\n  description = \"Bucket.\"\n  type        = string\n}\n"
	for _, tc := range []struct{ name, src, want string }{
		{"misspelt attribute",
			"resource \"google_storage_bucket\" \"b\" {\n  name                       = var.bucket\n  location                   = \"US\"\n  uniform_bucket_level_acess = true\n}\n",
			`bad.tf:4: resource google_storage_bucket.b: unknown attribute "uniform_bucket_level_acess"`},
		{"missing required attribute",
			"resource \"google_storage_bucket\" \"b\" {\n  name = var.bucket\n}\n",
			`bad.tf:1: resource google_storage_bucket.b: required attribute "location" is missing`},
		{"unknown nested block",
			"resource \"aws_s3_bucket_ownership_controls\" \"b\" {\n  bucket = var.bucket\n  rules {\n    object_ownership = \"BucketOwnerEnforced\"\n  }\n}\n",
			`bad.tf:3: resource aws_s3_bucket_ownership_controls.b: unknown block "rules"`},
		{"misspelt attribute in nested block",
			"resource \"aws_s3_bucket_ownership_controls\" \"b\" {\n  bucket = var.bucket\n  rule {\n    object_owner = \"BucketOwnerEnforced\"\n  }\n}\n",
			`bad.tf:4: resource aws_s3_bucket_ownership_controls.b.rule: unknown attribute "object_owner"`},
		{"too many blocks",
			"resource \"aws_s3_bucket_ownership_controls\" \"b\" {\n  bucket = var.bucket\n  rule {\n    object_ownership = \"BucketOwnerEnforced\"\n  }\n  rule {\n    object_ownership = \"BucketOwnerEnforced\"\n  }\n}\n",
			`at most 1 "rule" block(s)`},
		{"computed attribute set",
			"resource \"aws_ecr_repository\" \"r\" {\n  name           = var.bucket\n  repository_url = \"x\"\n}\n",
			`bad.tf:3: resource aws_ecr_repository.r: attribute "repository_url" is set by the provider`},
		{"unknown resource type",
			"resource \"google_storage_buckets\" \"b\" {\n  name = var.bucket\n}\n",
			`bad.tf:1: resource google_storage_buckets.b: unknown resource type`},
		{"secret version",
			"resource \"google_secret_manager_secret_version\" \"v\" {\n  secret      = var.bucket\n  secret_data = \"sk\"\n}\n",
			`bad.tf:1: resource google_secret_manager_secret_version.v: secret values must stay out of Terraform state`},
		{"undeclared variable",
			"output \"o\" {\n  description = \"O.\"\n  value       = var.buckett\n}\n",
			`bad.tf:3: variable "buckett" is not declared`},
		{"undeclared test variable",
			"run \"r\" {\n  variables {\n    buckett = \"b\"\n  }\n}\n",
			`bad.tf:3: variable "buckett" is not declared`},
		{"variable without description",
			"variable \"other\" {\n  type = string\n}\n",
			`bad.tf:1: variable "other" has no description`},
		{"not formatted",
			"output \"o\" {\n  description = \"O.\"\n  value = var.bucket\n}\n",
			`bad.tf:1: not formatted`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := checkModule(map[string][]byte{"variables.tf": []byte(variables), "bad.tf": []byte(tc.src)}, s)
			var got []string
			for _, err := range errs {
				got = append(got, err.Error())
			}
			if !slices.ContainsFunc(got, func(e string) bool { return strings.Contains(e, tc.want) }) {
				t.Errorf("errors %q, want one containing %q", got, tc.want)
			}
		})
	}
	if errs := checkModule(map[string][]byte{"variables.tf": []byte(variables)}, s); len(errs) != 0 {
		t.Errorf("a correct file: %v", errs)
	}
}
