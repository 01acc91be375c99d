// Command statjob runs Skill-Targeted Adaptive Training (STAT) as one batch
// job: a teacher LLM finds the skills a student model is missing, a training
// set is built for them, the student is fine-tuned and evaluated, and every
// stage is checkpointed in object storage so the job resumes where it stopped.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "statjob:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "statjob",
		Short:         "Skill-Targeted Adaptive Training as a resumable batch job",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the statjob version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "statjob", version)
		},
	})
	root.AddCommand(newGradeCmd())
	return root
}
