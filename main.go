// Command statjob runs Skill-Targeted Adaptive Training (STAT) as one batch
// job: a teacher LLM finds the skills a student model is missing, a training
// set is built for them, the student is fine-tuned and evaluated, and every
// stage is checkpointed in object storage so the job resumes where it stopped.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/stages"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/problems"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

//go:embed examples/default.yaml
var defaultSpec []byte

func main() {
	err := newRootCmd().Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "statjob:", err)
	if errors.Is(err, job.ErrInterrupted) {
		os.Exit(job.ExitInterrupted)
	}
	if errors.Is(err, errRegression) {
		os.Exit(exitRegression)
	}
	os.Exit(1)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "statjob",
		Short: "Skill-Targeted Adaptive Training as a resumable batch job",
		Long: `statjob runs STAT (Skill-Targeted Adaptive Training) as a graph of stages:
a teacher LLM finds the skills a student model is missing, a training set is
built for them, the student is fine-tuned and evaluated. Every stage keeps its
outputs and a MANIFEST.json in storage (a local folder, gs:// or s3://), so a
stopped job resumes where it stopped, and a new run takes every stage whose
inputs did not change from the stage cache.

The job spec is YAML; the default one is built in (statjob spec prints it).`,
		Example: `  # See the stage graph and which stages this build has
  statjob stages

  # Run the default job; then change one setting and run again (only the
  # stages that depend on it recompute)
  statjob run
  statjob run --config my.yaml --set job.poll=5s

  # A Cloud Batch array of 4 tasks works on one run side by side
  statjob run --config my.yaml --run-id "$BATCH_JOB_UID"   # shard from BATCH_TASK_INDEX/COUNT

  # What happened, and carry on after a preemption
  statjob runs --root gs://my-bucket/statjob
  statjob status --root gs://my-bucket/statjob
  statjob resume 20260102-150405-a1b2 --root gs://my-bucket/statjob`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd())
	root.AddCommand(newResumeCmd())
	root.AddCommand(newStatusCmd())
	root.AddCommand(newRunsCmd())
	root.AddCommand(newUnlockCmd())
	root.AddCommand(newStagesCmd())
	root.AddCommand(newSpecCmd())
	root.AddCommand(newCheckCmd())
	root.AddCommand(newSubmitCmd())
	root.AddCommand(newPruneCmd())
	root.AddCommand(newReportCmd())
	root.AddCommand(newCompareCmd())
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the statjob version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "statjob", version)
		},
	})
	root.AddCommand(newGradeCmd())
	root.AddCommand(newDemoCmd())
	return root
}

// specFlags are the flags that pick and change the job spec.
type specFlags struct {
	config string
	sets   []string
}

func (f *specFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "job spec YAML `FILE` or gs://, s3:// URI (default: the built-in spec, which statjob spec prints)")
	cmd.Flags().StringArrayVar(&f.sets, "set", nil, "override one field, e.g. --set storage.root=gs://b/p (repeatable)")
}

// load resolves the spec: defaults, the file (or the built-in spec), --set.
func (f *specFlags) load() (*job.Spec, error) {
	spec := newSpec()
	name, data := "built-in spec (examples/default.yaml)", defaultSpec
	if f.config != "" {
		var err error
		if strings.Contains(f.config, "://") {
			data, err = readURI(f.config)
		} else {
			data, err = os.ReadFile(f.config)
		}
		if err != nil {
			return nil, fmt.Errorf("read spec: %w", err)
		}
		name = f.config
	}
	if err := spec.Load(name, data); err != nil {
		return nil, err
	}
	for _, s := range f.sets {
		if err := spec.Set(s); err != nil {
			return nil, err
		}
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	return spec, nil
}

// rootFlag is --root, the storage root of commands that look at runs.
type rootFlag struct {
	specFlags
	root string
}

func (f *rootFlag) add(cmd *cobra.Command) {
	f.specFlags.add(cmd)
	cmd.Flags().StringVar(&f.root, "root", "", "storage root holding the runs (default: storage.root of the spec)")
}

// spec resolves the spec with --root applied.
func (f *rootFlag) spec() (*job.Spec, error) {
	if f.root != "" {
		f.sets = append(f.sets, "storage.root="+f.root)
	}
	return f.load()
}

// open returns the spec (for storage settings) and the store.
func (f *rootFlag) open(ctx context.Context) (*job.Spec, storage.Store, error) {
	spec, err := f.spec()
	if err != nil {
		return nil, nil, err
	}
	st, err := spec.Storage().Open(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("open storage: %w", err)
	}
	return spec, st, nil
}

func newRunCmd() *cobra.Command {
	var f rootFlag
	var o job.Options
	var shard, logFormat string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Start a run (or join one with --run-id) and work until its stages are done",
		Long: `Start a run of the job spec and work on it until every stage is done.

A run's spec is frozen in run.json. Every stage whose fingerprint (its
settings, inputs and code version) was finished before under the same root is
taken from the stage cache; the rest compute. Tasks of a batch array join one
run with the same --run-id and share the work through leases; a sharded stage
runs shard i of n in task i (--shard i/n, or BATCH_TASK_INDEX/BATCH_TASK_COUNT
on Cloud Batch, AWS_BATCH_JOB_ARRAY_INDEX with STATJOB_SHARD_COUNT on AWS
Batch, the replica in CLUSTER_SPEC with STATJOB_SHARD_COUNT on Vertex AI).

On SIGTERM or SIGINT no new work starts, work in flight gets job.grace to
finish, and statjob exits with status 75; start it again to resume.`,
		Example: `  statjob run
  statjob run --config examples/default.yaml --set storage.root=gs://my-bucket/statjob
  statjob run --until probe                 # stop after probe and what it needs
  statjob run --from diagnose               # recompute diagnose and everything after it
  statjob run --run-id nightly-42 --shard 0/4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			if err := shardOptions(&o, shard); err != nil {
				return err
			}
			if o.RunID == "" {
				o.RunID = batchRunID()
			}
			spec, err := f.spec()
			if err != nil {
				return err
			}
			return work(ctx, cmd, spec, o, logFormat)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&o.RunID, "run-id", "", "run to start or join (default: a new id; BATCH_JOB_UID or AWS_BATCH_JOB_ID on batch)")
	cmd.Flags().StringVar(&o.From, "from", "", "recompute this stage and all after it instead of taking them from the stage cache")
	cmd.Flags().StringVar(&o.Until, "until", "", "stop after this stage (and the stages it needs)")
	cmd.Flags().StringVar(&shard, "shard", "", "this task's shard, i/n (default: from the batch environment, else 0/1)")
	cmd.Flags().StringVar(&logFormat, "log", "auto", "output: text (lines and progress bars), json (structured logs), auto (text on a terminal)")
	return cmd
}

func newResumeCmd() *cobra.Command {
	var f rootFlag
	var logFormat string
	cmd := &cobra.Command{
		Use:   "resume RUN",
		Short: "Continue a run with its frozen spec, skipping every finished stage",
		Long: `Continue a run with the spec frozen in its run.json, skipping every stage
whose MANIFEST.json exists. Only the storage section comes from --config,
--set and --root (where the run lives and how to reach it); every other
setting is the run's own. To change one, start a new run: statjob run
--set ... takes every unchanged stage from the stage cache.`,
		Example: `  statjob resume 20260102-150405-a1b2
  statjob resume nightly-42 --root gs://my-bucket/statjob`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			for _, set := range f.sets {
				if !strings.HasPrefix(set, "storage.") {
					return fmt.Errorf("--set %s: resume continues the run's frozen spec; only storage.* can be set (start a new run with statjob run --set to change the rest)", set)
				}
			}
			here, st, err := f.open(ctx)
			if err != nil {
				return err
			}
			rec, err := job.ReadRun(ctx, st, args[0])
			st.Close()
			if err != nil {
				return err
			}
			spec := newSpec()
			if err := spec.Load("run.json of run "+rec.ID, rec.Spec); err != nil {
				return err
			}
			// The run is where we found it, whatever root it was started with.
			*spec.Storage() = *here.Storage()
			o := job.Options{RunID: rec.ID, Resume: true}
			if err := shardOptions(&o, ""); err != nil {
				return err
			}
			return work(ctx, cmd, spec, o, logFormat)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&logFormat, "log", "auto", "output: text, json or auto")
	return cmd
}

// checkDataDir refuses a data directory that is not there before a stage
// looks for its files, saying where a relative one was looked for.
func checkDataDir(spec *job.Spec) error {
	dir := spec.Section("data").(*problems.Config).Dir
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	where := dir
	if wd, err := os.Getwd(); err == nil && !filepath.IsAbs(dir) {
		where = fmt.Sprintf("%s (relative to the working directory, %s)", dir, wd)
	}
	return fmt.Errorf("data.dir: %s is not a directory: run statjob where its data/ is (a checkout, or /opt/statjob in the image), or set data.dir", where)
}

// work builds the graph and runs it. A plan with stages this build does not
// have is printed and refused before storage is touched.
func work(ctx context.Context, cmd *cobra.Command, spec *job.Spec, o job.Options, logFormat string) error {
	g, err := stages.Graph(spec)
	if err != nil {
		return err
	}
	selected, _, err := g.Select(o.From, o.Until)
	if err != nil {
		return err
	}
	if missing := job.Missing(selected); len(missing) > 0 {
		printPlan(cmd.OutOrStdout(), g)
		return fmt.Errorf("nothing was run: the plan needs stages this build does not have yet: %s", strings.Join(missing, ", "))
	}
	if err := checkDataDir(spec); err != nil {
		return err
	}
	tty := isatty.IsTerminal(os.Stderr.Fd())
	switch logFormat {
	case "text":
		tty = true
	case "json":
		tty = false
	case "auto":
	default:
		return fmt.Errorf("--log %q: want text, json or auto", logFormat)
	}
	st, err := spec.Storage().Open(ctx)
	if err != nil {
		return fmt.Errorf("open storage: %w", err)
	}
	defer st.Close()
	o.Reporter = job.NewReporter(cmd.ErrOrStderr(), tty)
	o.Version = version
	o.Task = job.BatchTask()
	sum, err := job.Run(ctx, st, spec, g, o)
	if sum != nil && err != nil && !errors.Is(err, job.ErrInterrupted) {
		fmt.Fprintf(cmd.ErrOrStderr(), "run %s stopped; its outputs so far are in %s\n", sum.RunID, sum.URI)
	}
	if errors.Is(err, job.ErrInterrupted) && sum != nil {
		return fmt.Errorf("%w: statjob resume %s", err, sum.RunID)
	}
	return err
}

// shardOptions sets the shard from --shard i/n or the batch environment.
func shardOptions(o *job.Options, flag string) error {
	parse := func(src, i, n string) error {
		var err1, err2 error
		o.Shard, err1 = strconv.Atoi(i)
		o.Shards, err2 = strconv.Atoi(n)
		if err1 != nil || err2 != nil || o.Shards < 1 || o.Shard < 0 || o.Shard >= o.Shards {
			return fmt.Errorf("%s: shard %q of %q: want 0 <= index < count", src, i, n)
		}
		return nil
	}
	if flag != "" {
		i, n, ok := strings.Cut(flag, "/")
		if !ok {
			return fmt.Errorf("--shard %q: want index/count, e.g. 0/4", flag)
		}
		return parse("--shard", i, n)
	}
	if i, n := os.Getenv("BATCH_TASK_INDEX"), os.Getenv("BATCH_TASK_COUNT"); i != "" && n != "" {
		return parse("BATCH_TASK_INDEX/BATCH_TASK_COUNT", i, n)
	}
	if i := os.Getenv("AWS_BATCH_JOB_ARRAY_INDEX"); i != "" {
		n := os.Getenv("STATJOB_SHARD_COUNT")
		if n == "" {
			return errors.New("AWS_BATCH_JOB_ARRAY_INDEX is set but STATJOB_SHARD_COUNT (the array size) is not")
		}
		return parse("AWS_BATCH_JOB_ARRAY_INDEX/STATJOB_SHARD_COUNT", i, n)
	}
	if cs, n := os.Getenv("CLUSTER_SPEC"), os.Getenv("STATJOB_SHARD_COUNT"); cs != "" && n != "" {
		i, err := job.ClusterSpecReplica(cs)
		if err != nil {
			return err
		}
		return parse("CLUSTER_SPEC/STATJOB_SHARD_COUNT", strconv.Itoa(i), n)
	}
	o.Shard, o.Shards = 0, 1
	return nil
}

// batchRunID is the run the tasks of a batch array share: the job's id.
func batchRunID() string {
	if id := os.Getenv("BATCH_JOB_UID"); id != "" {
		return id
	}
	if id := os.Getenv("AWS_BATCH_JOB_ID"); id != "" {
		id, _, _ = strings.Cut(id, ":") // array children are "<job>:<index>"
		return id
	}
	return ""
}

func newStatusCmd() *cobra.Command {
	var f rootFlag
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "status [RUN]",
		Short: "Show a run's stages: done, reused, running (and by whom), pending",
		Example: `  statjob status                      # the newest run
  statjob status nightly-42 --root gs://my-bucket/statjob
  statjob status --json | jq -r '.stages[] | select(.state == "pending") | .stage'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, id, err := f.openRun(ctx, cmd, args)
			if err != nil {
				return err
			}
			defer st.Close()
			rows, err := job.Status(ctx, st, id, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if jsonOut {
				return writeJSON(out, map[string]any{"run": id, "uri": st.URI("runs/" + id + "/"), "stages": rows})
			}
			fmt.Fprintf(out, "run %s (%s)\n", id, st.URI("runs/"+id+"/"))
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STAGE\tSTATE\tSTARTED\tTOOK\tFINGERPRINT\tHOLDER")
			for _, r := range rows {
				took, started := "", ""
				if !r.Started.IsZero() {
					started = r.Started.Local().Format("01-02 15:04:05")
				}
				if !r.Finished.IsZero() {
					took = r.Finished.Sub(r.Started).Round(time.Millisecond).String()
				}
				holder := r.Holder
				if r.State == "running" || r.State == "stale" {
					holder += " (lease until " + r.Expires.Local().Format("15:04:05") + ")"
				}
				if r.Shards != "" {
					holder = strings.TrimSpace(r.Shards + " " + holder)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Stage, r.State, started, took, short(r.Fingerprint), holder)
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON instead of a table")
	return cmd
}

// warnSkipped tells stderr about runs a listing left out, so that one
// damaged run.json neither hides the others nor goes unnoticed.
func warnSkipped(cmd *cobra.Command, skipped []error) {
	for _, err := range skipped {
		fmt.Fprintf(cmd.ErrOrStderr(), "statjob: skipped %v\n", err)
	}
}

// openRun opens the store and returns the run args names, or the newest
// run when args is empty.
func (f *rootFlag) openRun(ctx context.Context, cmd *cobra.Command, args []string) (storage.Store, string, error) {
	_, st, err := f.open(ctx)
	if err != nil {
		return nil, "", err
	}
	if len(args) > 0 {
		return st, args[0], nil
	}
	runs, skipped, err := job.ListRuns(ctx, st)
	warnSkipped(cmd, skipped)
	if err == nil && len(runs) == 0 {
		err = fmt.Errorf("no runs under %s", st.URI("runs/"))
	}
	if err != nil {
		st.Close()
		return nil, "", err
	}
	return st, runs[0].ID, nil
}

func short(fp string) string {
	if len(fp) > 12 {
		return fp[:12]
	}
	return fp
}

func newRunsCmd() *cobra.Command {
	var f rootFlag
	var jsonOut bool
	cmd := &cobra.Command{
		Use:     "runs",
		Short:   "List the runs under a storage root, newest first",
		Example: `  statjob runs --root gs://my-bucket/statjob`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			_, st, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			runs, skipped, err := job.ListRuns(ctx, st)
			if err != nil {
				return err
			}
			warnSkipped(cmd, skipped)
			type runRow struct {
				ID      string    `json:"id"`
				Created time.Time `json:"created"`
				Done    int       `json:"done"`
				Stages  int       `json:"stages"`
				Version string    `json:"version"`
			}
			var list []runRow
			for _, r := range runs {
				rows, err := job.Status(ctx, st, r.ID, time.Now())
				if err != nil {
					warnSkipped(cmd, []error{fmt.Errorf("run %s: %w", r.ID, err)})
					continue
				}
				row := runRow{ID: r.ID, Created: r.Created, Stages: len(rows), Version: r.Version}
				for _, s := range rows {
					if s.State == "done" || s.State == "reused" {
						row.Done++
					}
				}
				list = append(list, row)
			}
			if jsonOut {
				return writeJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tCREATED\tDONE\tVERSION")
			for _, r := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\n", r.ID, r.Created.Local().Format("2006-01-02 15:04:05"), r.Done, r.Stages, r.Version)
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON instead of a table")
	return cmd
}

func newUnlockCmd() *cobra.Command {
	var f rootFlag
	cmd := &cobra.Command{
		Use:   "unlock RUN [STAGE]",
		Short: "Break the leases of a run (or of one stage), after showing who holds them",
		Long: `Break leases whose holder is gone, so that the next runner takes the work
at once rather than after the lease expires. A holder that is still alive
notices at its next heartbeat and abandons that work.`,
		Example: `  statjob unlock nightly-42 probe --root gs://my-bucket/statjob
  statjob unlock nightly-42 probe.3-of-8 --root gs://my-bucket/statjob   # one shard`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			_, st, err := f.open(ctx)
			if err != nil {
				return err
			}
			defer st.Close()
			// A mistyped run id must not read as "nothing to unlock".
			rec, err := job.ReadRun(ctx, st, args[0])
			if err != nil {
				return err
			}
			leases, err := job.ReadLeases(ctx, st, args[0])
			if err != nil {
				return err
			}
			if len(args) == 2 {
				if _, piece := leases[args[1]]; !piece && !slices.Contains(rec.Stages, args[1]) {
					return fmt.Errorf("run %s has no stage %q (stages: %s)", rec.ID, args[1], strings.Join(rec.Stages, ", "))
				}
			}
			out := cmd.OutOrStdout()
			broke := 0
			for piece, ls := range leases {
				if len(args) == 2 && piece != args[1] && !strings.HasPrefix(piece, args[1]+".") {
					continue
				}
				if ls.Released {
					continue
				}
				fmt.Fprintf(out, "%s: held by %s since %s, last heartbeat %s, until %s\n", piece, ls.Holder,
					ls.Acquired.Local().Format(time.DateTime), ls.Heartbeat.Local().Format(time.DateTime), ls.Expires.Local().Format(time.DateTime))
				if _, err := job.BreakLease(ctx, st, args[0], piece); err != nil {
					return err
				}
				fmt.Fprintf(out, "%s: unlocked\n", piece)
				broke++
			}
			if broke == 0 {
				fmt.Fprintln(out, "no lease is held")
			}
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func newStagesCmd() *cobra.Command {
	var f specFlags
	cmd := &cobra.Command{
		Use:   "stages",
		Short: "Show the stage graph of the job spec and which stages this build has",
		Example: `  statjob stages
  statjob stages --set pipeline.strategies=[stat-sel]`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := f.load()
			if err != nil {
				return err
			}
			g, err := stages.Graph(spec)
			if err != nil {
				return err
			}
			printPlan(cmd.OutOrStdout(), g)
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func newSpecCmd() *cobra.Command {
	var f specFlags
	cmd := &cobra.Command{
		Use:   "spec",
		Short: "Print the resolved job spec (defaults, file, --set) as YAML",
		Long: `Print the resolved job spec (defaults, then --config, then --set) as YAML.
Every field is written out but the optional ones left empty, which are
omitted: pipeline.grpo, student.system, student.dtype,
difficulty.prm.dtype, teacher.prices, teacher.budget's limits, and the
base_url, api_key_env, project and location of teacher and of
dataset.embed, and dataset.embed.dimensions (README.md describes them).`,
		Example: `  statjob spec > my.yaml        # a spec to start from
  statjob spec --config my.yaml --set job.poll=5s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := f.load()
			if err != nil {
				return err
			}
			y, err := spec.YAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(y)
			return err
		},
	}
	f.add(cmd)
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printPlan shows the graph in order with each stage's needs and whether
// this build has it.
func printPlan(w io.Writer, g *job.Graph) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tNEEDS\tINSTALLED")
	installed := 0
	for _, st := range g.Stages() {
		yes := "no"
		if job.Installed(st) {
			yes = "yes"
			installed++
			if _, ok := st.(job.Sharded); ok {
				yes = "yes (sharded)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", st.Name(), strings.Join(st.Needs(), ", "), yes)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d of %d stages are installed in this build.\n", installed, len(g.Stages()))
}
