package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/stages"
	"github.com/statjob/statjob/storage"
)

func newCheckCmd() *cobra.Command {
	var (
		f       specFlags
		offline bool
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check a job spec before running it: storage, backend, student, data, teacher",
		Long: `Check what a run of the spec will use, in seconds and before any GPU
time is spent: the storage root takes writes, conditional writes (the
leases depend on them), reads, lists and deletes; the compute backend
starts; the base student's tokenizer, chat template, config and safetensors
headers agree (no weights are read); every data file loads; and the teacher
(and an embeddings API, when the spec uses one) answers one short request,
past the response cache. --offline leaves out the calls to paid APIs and
only checks that the variables holding their keys are set.

Each check prints one line (--json: a list of {"check", "ok", "detail",
"error"}); the exit status is 1 when any failed.`,
		Example: `  statjob check --config my.yaml
  statjob check --config my.yaml --json | jq '.[] | select(.ok | not)'
  statjob check --config gs://my-bucket/statjob/submit/nightly-1/spec.yaml --offline`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := f.load()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			d, err := checkStorage(ctx, spec.Storage())
			checks := append([]stages.Check{{Name: "storage", Detail: d, Err: err}}, stages.Preflight(ctx, spec, !offline)...)
			return printChecks(cmd.OutOrStdout(), checks, asJSON)
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&offline, "offline", false, "do not call the teacher or an embeddings API; only check that their key variables are set")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the checks as JSON")
	return cmd
}

// printChecks writes one line per check (or, asJSON, a JSON list) and
// fails when any did.
func printChecks(w io.Writer, checks []stages.Check, asJSON bool) error {
	type row struct {
		Check  string `json:"check"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail,omitempty"`
		Error  string `json:"error,omitempty"`
	}
	rows := make([]row, len(checks))
	failed := 0
	for i, c := range checks {
		rows[i] = row{Check: c.Name, OK: c.Err == nil, Detail: c.Detail}
		if c.Err != nil {
			rows[i].Error = c.Err.Error()
			failed++
		}
	}
	if asJSON {
		if err := writeJSON(w, rows); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, r := range rows {
			status, text := "ok", r.Detail
			if !r.OK {
				status, text = "FAIL", r.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", status, r.Check, text)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d checks failed", failed, len(checks))
	}
	return nil
}

// checkStorage opens the storage root and does there what a run does: a
// create-only write, a second one that must be refused, a read, a list
// and a delete of one small object under .check/.
func checkStorage(ctx context.Context, cfg *storage.Config) (string, error) {
	start := time.Now()
	st, err := cfg.Open(ctx)
	if err != nil {
		return "", fmt.Errorf("storage.root: %w", err)
	}
	defer st.Close()
	key := ".check/" + job.NewRunID(start) // unique enough: a random suffix
	body := []byte("statjob check\n")
	fail := func(what string, err error) (string, error) {
		return "", fmt.Errorf("storage.root %s: %s: %w", st.URI(""), what, err)
	}
	if !st.Conditional() {
		return fail("conditional writes", storage.ErrUnsupported)
	}
	if _, err := st.Put(ctx, key, bytes.NewReader(body), storage.PutOptions{IfAbsent: true}); err != nil {
		return fail("write "+key, err)
	}
	defer st.Delete(context.WithoutCancel(ctx), key) // on a failure below too
	if _, err := st.Put(ctx, key, bytes.NewReader(body), storage.PutOptions{IfAbsent: true}); !errors.Is(err, storage.ErrExists) {
		return fail("a second create-only write of "+key+" was not refused", err)
	}
	rc, err := st.Get(ctx, key)
	if err != nil {
		return fail("read "+key, err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, body) {
		return fail("read "+key, fmt.Errorf("got %q, %v", got, err))
	}
	listed := 0
	if err := st.List(ctx, key, func(storage.Attrs) error { listed++; return nil }); err != nil || listed != 1 {
		return fail("list "+key, fmt.Errorf("%d objects listed, %v", listed, err))
	}
	if err := st.Delete(ctx, key); err != nil {
		return fail("delete "+key, err)
	}
	return fmt.Sprintf("%s: write, conditional write, read, list, delete in %s", st.URI(""),
		time.Since(start).Round(time.Millisecond)), nil
}
