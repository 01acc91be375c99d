package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/statjob/statjob/job"
	"github.com/statjob/statjob/stages"
	"github.com/statjob/statjob/storage"
	"github.com/statjob/statjob/task/skillsworld"
)

//go:embed examples/demo.yaml
var demoSpec []byte

func newDemoCmd() *cobra.Command {
	var (
		dir, root, logFormat string
		sets                 []string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole STAT pipeline offline on a small math world (CPU, a few minutes)",
		Long: `Run STAT end to end on the skills world, with nothing to download and no key:
a small synthetic math task (three subjects, six skills), a tiny base
student that never learned three of the skills, and a teacher that knows the world,
served on loopback and reached through the real OpenAI client.

The world goes to DIR/data, the base student to DIR/student, the runs and
the stage cache to DIR/store, or to --root (a folder, gs:// or s3://, so the
demo also tries a bucket); the spec is examples/demo.yaml (built in). The
pipeline runs as statjob run runs it; at the end the report's location is
printed, and its Markdown shown. Run it again and the finished stages are
taken from the stage cache (a stopped demo carries on where it stopped).`,
		Example: `  statjob demo
  statjob demo --dir /tmp/statjob-demo
  statjob demo --set pipeline.strategies=[stat-sel] --set sft.epochs=6   # a quicker one
  statjob demo --root gs://my-bucket/statjob-demo   # the runs in a bucket
  statjob status --root statjob-demo/store     # what the demo's run did`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return demo(ctx, cmd, dir, root, logFormat, sets)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "statjob-demo", "folder for the world, the base student and the runs")
	cmd.Flags().StringVar(&root, "root", "", "storage root for the runs and the stage cache (default DIR/store)")
	cmd.Flags().StringVar(&logFormat, "log", "auto", "output: text, json or auto")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override one field of the demo spec, e.g. --set sft.epochs=4 (repeatable)")
	return cmd
}

// demoEnv is a prepared demo: its folders, the teacher being served, and
// the spec pointing at them.
type demoEnv struct {
	root, data, student string
	teacher             string // the oracle's base URL
	spec                *job.Spec
	srv                 *http.Server
}

func (d *demoEnv) Close() error { return d.srv.Close() }

// oracleAddrFile keeps the teacher's address between demos: the same
// address gives the same spec, so a second demo reuses every stage.
const oracleAddrFile = "oracle.addr"

// startDemo writes the world and the base student under dir (files already
// there with the same bytes are left alone), serves the oracle teacher on
// loopback, and resolves the demo spec with sets applied, its runs under
// root (dir/store when root is "").
func startDemo(dir, root string, sets ...string) (*demoEnv, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if root == "" {
		root = filepath.Join(abs, "store")
	}
	d := &demoEnv{root: root, data: filepath.Join(abs, "data"), student: filepath.Join(abs, "student")}
	if err := skillsworld.Write(d.data, skillsworld.DefaultConfig()); err != nil {
		return nil, err
	}
	if err := skillsworld.WriteStudent(d.student); err != nil {
		return nil, err
	}
	ln, err := listenOracle(filepath.Join(abs, oracleAddrFile))
	if err != nil {
		return nil, err
	}
	d.teacher = "http://" + ln.Addr().String() + "/v1"
	oracle, err := skillsworld.NewOracle(skillsworld.DefaultConfig())
	if err != nil {
		ln.Close()
		return nil, err
	}
	d.srv = &http.Server{Handler: oracle, ReadHeaderTimeout: 10 * time.Second}
	go d.srv.Serve(ln)

	d.spec = newSpec()
	if err := d.spec.Load("built-in demo spec (examples/demo.yaml)", demoSpec); err != nil {
		d.Close()
		return nil, err
	}
	// The demo's folders and teacher come last: --dir says where they are.
	sets = append(sets, "storage.root="+d.root, "data.dir="+d.data, "student.model="+d.student,
		"teacher.base_url="+d.teacher)
	for _, set := range sets {
		if err := d.spec.Set(set); err != nil {
			d.Close()
			return nil, err
		}
	}
	if err := d.spec.Validate(); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// unfinishedRun is the newest run under the demo's store when some of its
// stages are not done, else a new run id.
func unfinishedRun(ctx context.Context, d *demoEnv) (string, error) {
	st, err := d.spec.Storage().Open(ctx)
	if err != nil {
		return "", fmt.Errorf("open storage: %w", err)
	}
	defer st.Close()
	runs, _, err := job.ListRuns(ctx, st)
	if err != nil || len(runs) == 0 {
		return job.NewRunID(time.Now()), err
	}
	rows, err := job.Status(ctx, st, runs[0].ID, time.Now())
	if err != nil {
		return "", err
	}
	for _, r := range rows {
		if r.State != "done" && r.State != "reused" {
			return runs[0].ID, nil
		}
	}
	return job.NewRunID(time.Now()), nil
}

// listenOracle listens on the loopback address recorded in file, or on a
// free port (recorded for next time) when there is none or it is taken.
func listenOracle(file string) (net.Listener, error) {
	if b, err := os.ReadFile(file); err == nil {
		if ln, err := net.Listen("tcp", strings.TrimSpace(string(b))); err == nil {
			return ln, nil
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("serve the demo teacher: %w", err)
	}
	if err := os.WriteFile(file, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
		ln.Close()
		return nil, fmt.Errorf("record the demo teacher's address: %w", err)
	}
	return ln, nil
}

// demo runs the pipeline on the skills world and shows the report.
func demo(ctx context.Context, cmd *cobra.Command, dir, root, logFormat string, sets []string) error {
	d, err := startDemo(dir, root, sets...)
	if err != nil {
		return err
	}
	defer d.Close()
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "skills world: %s\nbase student: %s\nteacher:      %s (it knows the world)\nruns:         %s\n\n",
		d.data, d.student, d.teacher, d.root)
	// A demo that was stopped carries on with its run, mid-stage work
	// included; a changed spec or a finished run gets a new one. Its task
	// name lets it take over the leases its stopped process left at once.
	id, err := unfinishedRun(ctx, d)
	if err != nil {
		return err
	}
	opts := job.Options{RunID: id, Task: "demo"}
	err = work(ctx, cmd, d.spec, opts, logFormat)
	if errors.Is(err, job.ErrSpecChanged) {
		fmt.Fprintf(out, "run %s had another spec; starting a new run\n", id)
		id = job.NewRunID(time.Now())
		opts.RunID = id
		err = work(ctx, cmd, d.spec, opts, logFormat)
	}
	if err != nil {
		return err
	}
	st, err := d.spec.Storage().Open(ctx)
	if err != nil {
		return fmt.Errorf("open storage: %w", err)
	}
	defer st.Close()
	where := func(name string) string { // a local root is shown as a path
		uri := st.URI(job.OutputKey(id, "report", name))
		if p, ok := strings.CutPrefix(uri, "file://"); ok {
			return filepath.FromSlash(p)
		}
		return uri
	}
	rc, err := st.Get(ctx, job.OutputKey(id, "report", stages.ReportMD))
	if errors.Is(err, storage.ErrNotExist) {
		fmt.Fprintf(out, "\nrun %s is done; the report is in %s\n", id, where(""))
		return nil
	}
	if err != nil {
		return err
	}
	md, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%s\nrun %s is done; the report: %s (and %s)\n", md, id, where(stages.ReportHTML), where(stages.ReportMD))
	return nil
}
