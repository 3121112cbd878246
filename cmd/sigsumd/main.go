// Command sigsumd runs one node of a Sigsum log: `sigsumd -role primary|secondary -config sigsumd.toml`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"

	"github.com/sigsumd/sigsumd/internal/buildinfo"
	"github.com/sigsumd/sigsumd/internal/config"
	"github.com/sigsumd/sigsumd/internal/node"
)

// defaultGCPercent is sigsumd's GOGC when the environment sets none. Most of a node's heap is long-lived data
// without pointers (the signed tree's hashes, tiles and Bloom filter, cached leaf text, the index), which the
// collector does not scan: collecting when the heap has grown by half of it rather than all of it costs a
// collection twice as often, each about as cheap, and keeps that much less resident (about 40 MiB of a primary
// at 10^7 leaves, with the same read and add-leaf rates). GOGC in the environment wins; GOMEMLIMIT applies as ever.
const defaultGCPercent = 50

// setGCDefault applies defaultGCPercent unless lookupEnv finds GOGC, and reports whether it did.
func setGCDefault(lookupEnv func(string) (string, bool)) bool {
	if _, set := lookupEnv("GOGC"); set {
		return false
	}
	debug.SetGCPercent(defaultGCPercent)
	return true
}

func main() {
	setGCDefault(os.LookupEnv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-version" || args[0] == "--version") {
		fmt.Fprintln(stdout, buildinfo.String("sigsumd"))
		return 0
	}
	if slices.Contains(args, "-h") || slices.Contains(args, "-help") || slices.Contains(args, "--help") {
		stderr = stdout // asked for: help goes to stdout
	}
	cfg, err := config.Load(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "sigsumd: %v\n", err)
		return 2
	}
	reload := func() (*config.Config, error) { return config.Load(args, io.Discard) }
	if err := node.Run(ctx, cfg, node.Options{LogOut: stderr, Reload: reload}); err != nil {
		fmt.Fprintf(stderr, "sigsumd: %v\n", err)
		return 1
	}
	return 0
}
