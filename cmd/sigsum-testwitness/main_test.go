package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/internal/witness"
	"github.com/sigsumd/sigsumd/internal/witness/witnesstest"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/policy"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// TestServe runs the command in-process on a loopback port and has a Collector get cosignatures from it, across a
// restart of the witness with its state file.
func TestServe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	priv := ed25519.NewKeyFromSeed(witnesstest.Seed(9))
	keyFile := filepath.Join(dir, "witness.key")
	if err := key.WritePrivateKeyFile(keyFile, priv, "test"); err != nil {
		t.Fatal(err)
	}
	l, other := witnesstest.NewLog(1), witnesstest.NewLog(2)
	var logFiles []string
	for i, lg := range []*witnesstest.Log{l, other} {
		f := filepath.Join(dir, "log"+string(rune('a'+i))+".pub")
		if err := key.WritePublicKeyFile(f, lg.Public(), "log"); err != nil {
			t.Fatal(err)
		}
		logFiles = append(logFiles, f)
	}
	state := filepath.Join(dir, "state")
	args := []string{"-listen", "127.0.0.1:0", "-key-file", keyFile, "-name", "cmd-witness",
		"-log-key-file", strings.Join(logFiles, ","), "-state-file", state}

	start := func() (url string, stop func()) {
		ctx, cancel := context.WithCancel(t.Context())
		pr, pw := io.Pipe()
		var stderr bytes.Buffer
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, args, pw, &stderr)
			pw.Close()
		}()
		line, err := bufio.NewReader(pr).ReadString('\n')
		if err != nil {
			cancel()
			t.Fatalf("no listening line: %v (exit %d, stderr %s)", err, <-done, stderr.String())
		}
		url, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
		if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") {
			t.Fatalf("listening line %q", line)
		}
		go io.Copy(io.Discard, pr)
		return url, func() {
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("exit %d: %s", code, stderr.String())
				}
			case <-time.After(10 * time.Second):
				t.Error("did not stop")
			}
		}
	}

	pub := sigsum.PublicKey(priv.Public().(ed25519.PublicKey))
	collect := func(url string) []witness.Cosigned {
		c, err := witness.New(witness.Config{
			Witnesses: []policy.Witness{{Name: "cmd-witness", Key: pub, URL: url}},
			LogKey:    l.Public(),
			Proofs:    l.Proof,
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return c.Cosign(t.Context(), l.Head())
	}

	url, stop := start()
	l.Append(4)
	if cs := collect(url); len(cs) != 1 || cs[0].KeyHash != pub.KeyHash() {
		t.Fatalf("cosignatures %+v", cs)
	}
	stop()

	// Restarted, the witness remembers size 4: a collector without state recovers through a 409.
	url, stop = start()
	defer stop()
	l.Append(3)
	if cs := collect(url); len(cs) != 1 {
		t.Fatalf("after restart: %d cosignatures", len(cs))
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k")
	if err := key.WritePrivateKeyFile(keyFile, ed25519.NewKeyFromSeed(witnesstest.Seed(1)), ""); err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(dir, "p")
	if err := key.WritePublicKeyFile(pubFile, witnesstest.NewLog(1).Public(), ""); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-name", "w", "-log-key-file", pubFile}, 2, "required"},
		{[]string{"-key-file", keyFile, "-log-key-file", pubFile}, 2, "required"},
		{[]string{"-key-file", keyFile, "-name", "w"}, 2, "required"},
		{[]string{"-key-file", keyFile, "-name", "w", "-log-key-file", pubFile, "extra"}, 2, "required"},
		{[]string{"-bogus"}, 2, "not defined"},
		{[]string{"-listen", "0.0.0.0:0", "-key-file", keyFile, "-name", "w", "-log-key-file", pubFile}, 1, "loopback"},
		{[]string{"-listen", "192.0.2.1:0", "-key-file", keyFile, "-name", "w", "-log-key-file", pubFile}, 1, "loopback"},
		{[]string{"-listen", "nonsense", "-key-file", keyFile, "-name", "w", "-log-key-file", pubFile}, 1, "listen address"},
		{[]string{"-key-file", filepath.Join(dir, "missing"), "-name", "w", "-log-key-file", pubFile}, 1, "missing"},
		{[]string{"-key-file", keyFile, "-name", "w", "-log-key-file", keyFile}, 1, "log key"},
		{[]string{"-key-file", keyFile, "-name", "a b", "-log-key-file", pubFile}, 1, "name"},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		if code := run(t.Context(), tt.args, io.Discard, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: exit %d (%s), want %d and %q", tt.args, code, strings.TrimSpace(stderr.String()), tt.code, tt.want)
		}
	}
}
