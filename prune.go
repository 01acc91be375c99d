package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/statjob/statjob/job"
)

func newPruneCmd() *cobra.Command {
	var f rootFlag
	var olderThan string
	var opts job.PruneOptions
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete stage cache entries (and, when asked, old runs and teacher replies) unused for a while",
		Long: `Delete what a storage root has kept and nobody has used for a while.

By default only the stage cache (cache/stages/): an entry goes when no run
has finished or reused that stage since --older-than ago, so stages a
nightly job reuses every night stay however old they are. --runs also
deletes run folders started before then (never the newest run, nor one whose
work is leased right now); their finished stages stay reusable through the
cache until it is pruned too. --teacher also deletes teacher replies and
embedding vectors written before then: a job that asks the same again pays
for it again.

Run it between jobs; a job that meets an entry being pruned computes the
stage again rather than taking half of it.`,
		Example: `  statjob prune --older-than 30d --root gs://my-bucket/statjob --dry-run
  statjob prune --older-than 30d --runs --root s3://my-bucket/statjob`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			age, err := parseAge(olderThan)
			if err != nil {
				return fmt.Errorf("--older-than: %w", err)
			}
			ctx := cmd.Context()
			_, st, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			opts.Before = time.Now().Add(-age)
			pruned, err := job.Prune(ctx, st, opts)
			if jsonOut {
				if werr := writeJSON(cmd.OutOrStdout(), pruned); werr != nil && err == nil {
					err = werr
				}
				return err
			}
			verb := "deleted"
			if opts.DryRun {
				verb = "would delete"
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tWHAT\tOBJECTS\tBYTES\tLAST USED")
			var objects int
			var bytes int64
			for _, p := range pruned {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", p.Kind, st.URI(p.Key), p.Objects, p.Bytes, p.Used.Local().Format("2006-01-02 15:04"))
				objects += p.Objects
				bytes += p.Bytes
			}
			if ferr := tw.Flush(); ferr != nil && err == nil {
				err = ferr
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %d objects, %d bytes, unused since %s\n", verb, objects, bytes, opts.Before.Local().Format("2006-01-02 15:04"))
			return err
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&olderThan, "older-than", "", "age of what goes: a Go duration (720h) or days (30d); required")
	cmd.Flags().BoolVar(&opts.Runs, "runs", false, "also delete run folders started before then")
	cmd.Flags().BoolVar(&opts.Teacher, "teacher", false, "also delete teacher replies and embeddings written before then")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "list what would go, delete nothing")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON instead of a table")
	return cmd
}

// parseAge reads a Go duration or a whole number of days ("30d").
func parseAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("required: how long unused, e.g. 30d or 720h")
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("%q: want whole days such as 30d, or a duration such as 720h", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q: want whole days such as 30d, or a duration such as 720h", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: want a positive age", s)
	}
	return d, nil
}
