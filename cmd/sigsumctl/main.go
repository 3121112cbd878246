// Command sigsumctl is the operator's tool for sigsumd: make keys, initialise a node, show its status.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sort"
	"syscall"

	"github.com/sigsumd/sigsumd/internal/buildinfo"
	"github.com/sigsumd/sigsumd/internal/engine"
)

// command is one sigsumctl verb.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"keygen":  {"make an OpenSSH ed25519 key pair", keygen},
		"init":    {"initialise a node: data directory, key, tree, startup file, configuration", initNode},
		"status":  {"show a node's status: a running one's (-url) or a stopped one's tree and signed tree head", statusCmd},
		"leaf":    {"print the add-leaf request for data on stdin, signed with a key file", leafRequest},
		"promote": {"turn a stopped secondary into the log's primary", promoteNode},
		"submit":  {"sign files, add them to a log, write <file>.proof proofs of logging", submitCmd},
		"verify":  {"check proofs of logging offline against data, submitter keys and a policy", verifyCmd},
		"monitor": {"follow a log: verify heads and leaves, report watched keys' leaves, alert", monitorCmd},
		"version": {"print the version and VCS revision of this build", versionCmd},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Trillian's own messages matter to the operator only when something fails. (klog is process-wide: set once,
	// here, not in run, which tests call concurrently.)
	engine.RouteKlog(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 {
		usage(stderr, cmds)
		return 2
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" && len(args) == 1 {
		usage(stdout, cmds)
		return 0
	}
	if args[0] == "-version" || args[0] == "--version" {
		args[0] = "version"
	}
	if args[0] == "help" {
		args = []string{args[1], "-h"} // help <command>: its flags
	}
	if slices.Contains(args, "-h") || slices.Contains(args, "-help") || slices.Contains(args, "--help") {
		stderr = stdout // asked for: help goes to stdout
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "sigsumctl: unknown command %q\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	if err := c.run(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "sigsumctl %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func versionCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if err := parse(newFlags("version", stderr), args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, buildinfo.String("sigsumctl"))
	return nil
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: sigsumctl <command> [flags]; sigsumctl <command> -h for its flags")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, cmds[n].summary)
	}
}

// newFlags returns a flag set for a verb that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sigsumctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
