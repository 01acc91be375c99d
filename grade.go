package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/statjob/statjob/task/mathgrade"
)

// newGradeCmd is `statjob grade`: grade files of model outputs with the
// pipeline's grader.
func newGradeCmd() *cobra.Command {
	var format string
	cfg := mathgrade.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "grade [FILE]",
		Short: "Grade model responses against gold answers",
		Long: `Grade reads one gold answer and one model response per line, extracts the
response's final answer (last \boxed{}, then "the answer is", then the last
number) and compares it with the gold answer by value. It reads FILE, or
standard input when FILE is absent or "-".

Input (--format jsonl, the default): {"gold": "...", "response": "..."} per
line; gold may also be a number. Output: one JSON object per line with
correct, the extracted answer, the rule that found it and how the verdict was
reached.

Input (--format tsv): gold<TAB>response per line. Output: 1 or 0 per line.

Blank lines are skipped and get no verdict. A summary (count, accuracy,
rules used) goes to standard error.`,
		Example: `  statjob grade outputs.jsonl > verdicts.jsonl
  printf '1/2\tso the answer is $0.5$.\n' | statjob grade --format tsv`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "jsonl" && format != "tsv" {
				return fmt.Errorf("--format: %q is not jsonl or tsv", format)
			}
			g, err := mathgrade.New(cfg)
			if err != nil {
				return err
			}
			name, in := "stdin", cmd.InOrStdin()
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("open %s: %w", args[0], err)
				}
				defer f.Close()
				name, in = args[0], f
			}
			return gradeStream(g, format, name, in, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&format, "format", "jsonl", "input and output format: jsonl or tsv")
	cmd.Flags().Float64Var(&cfg.RelTol, "rel-tol", cfg.RelTol, "relative tolerance for numbers (0: exact)")
	return cmd
}

type gradeInput struct {
	Gold     json.RawMessage `json:"gold"`
	Response *string         `json:"response"`
}

type gradeOutput struct {
	Line int `json:"line"`
	mathgrade.Result
}

func gradeStream(g *mathgrade.Grader, format, name string, in io.Reader, out, errOut io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	w := bufio.NewWriter(out)
	defer w.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	total, correct := 0, 0
	rules := map[mathgrade.Rule]int{}
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.TrimSpace(text) == "" {
			continue
		}
		gold, resp, err := parseGradeLine(format, text)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
		r := g.Grade(resp, gold)
		total++
		rules[r.Rule]++
		if r.Correct {
			correct++
		}
		if format == "tsv" {
			v := "0"
			if r.Correct {
				v = "1"
			}
			if _, err := fmt.Fprintln(w, v); err != nil {
				return fmt.Errorf("write verdict: %w", err)
			}
		} else if err := enc.Encode(gradeOutput{Line: line, Result: r}); err != nil {
			return fmt.Errorf("write verdict: %w", err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write verdicts: %w", err)
	}
	acc := 0.0
	if total > 0 {
		acc = 100 * float64(correct) / float64(total)
	}
	names := make([]string, 0, len(rules))
	for r := range rules {
		names = append(names, string(r))
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, r := range names {
		parts[i] = fmt.Sprintf("%s %d", r, rules[mathgrade.Rule(r)])
	}
	fmt.Fprintf(errOut, "graded %d: %d correct (%.1f%%); rules: %s\n", total, correct, acc, strings.Join(parts, ", "))
	return nil
}

func parseGradeLine(format, text string) (gold, resp string, err error) {
	if format == "tsv" {
		g, r, ok := strings.Cut(text, "\t")
		if !ok {
			return "", "", fmt.Errorf("no tab between gold and response")
		}
		return g, r, nil
	}
	var in gradeInput
	if err := json.Unmarshal([]byte(text), &in); err != nil {
		return "", "", err
	}
	if len(in.Gold) == 0 || string(in.Gold) == "null" {
		return "", "", fmt.Errorf("missing field \"gold\"")
	}
	if in.Response == nil {
		return "", "", fmt.Errorf("missing field \"response\"")
	}
	if err := json.Unmarshal(in.Gold, &gold); err != nil {
		var n json.Number
		if err := json.Unmarshal(in.Gold, &n); err != nil {
			return "", "", fmt.Errorf("field \"gold\": %s is neither a string nor a number", in.Gold)
		}
		gold = n.String()
	}
	return gold, *in.Response, nil
}
