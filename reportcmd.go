package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/statjob/statjob/stages"
)

func newReportCmd() *cobra.Command {
	var f rootFlag
	var out string
	cmd := &cobra.Command{
		Use:   "report [RUN]",
		Short: "Render a run's report again from its stage outputs, without running anything",
		Long: `Render the report of a run (the newest when RUN is left out) again from the
outputs of its finished stages, with this build's report code: the same
page the report stage writes, from the same inputs, read from storage. The
run and its stages are not changed. Every stage the report reads (difficulty,
diagnose, each evaluate/<arm> and sft/<arm>) must be done.

Without --out the Markdown report goes to stdout; with --out DIR the folder
gets report.html, report.md and summary.json.`,
		Example: `  statjob report nightly-42 --root gs://my-bucket/statjob | less
  statjob report nightly-42 --out ./nightly-42 && open ./nightly-42/report.html`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, id, err := f.openRun(ctx, cmd, args)
			if err != nil {
				return err
			}
			defer st.Close()
			run, err := stages.OpenRun(ctx, st, id)
			if err != nil {
				return err
			}
			rep, err := stages.RenderReport(ctx, run)
			if err != nil {
				return err
			}
			if out == "" {
				_, err := cmd.OutOrStdout().Write(rep.Markdown)
				return err
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			for _, f := range []struct {
				name string
				data []byte
			}{{stages.ReportHTML, rep.HTML}, {stages.ReportMD, rep.Markdown}, {stages.ReportSummary, rep.Summary}} {
				p := filepath.Join(out, f.name)
				if err := os.WriteFile(p, f.data, 0o644); err != nil {
					return fmt.Errorf("write %s: %w", p, err)
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "report of run %s written to %s\n", id, filepath.Join(out, stages.ReportHTML))
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVarP(&out, "out", "o", "", "write report.html, report.md and summary.json into this local `DIR` (default: Markdown to stdout)")
	return cmd
}
