package primary

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/internal/httpguard"
	"github.com/sigsumd/sigsumd/internal/metrics"
)

// TestSlowAddLeafBody checks that an add-leaf body that does not arrive within the primary's timeout gets a 408
// with a one-line reason (not a dropped connection, nor a handler waiting forever), that no such leaf is queued,
// and that a prompt body is still accepted. The client is raw TCP on loopback, through the handler chain a node
// serves (the guard and the metrics around the mux).
func TestSlowAddLeafBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	WriteStartupFile(e.sthFile(), StartupEmpty)
	const timeout = 300 * time.Millisecond
	p, err := New(context.Background(), Config{Log: e.log, Signer: e.signer, STHFile: e.sthFile(), Timeout: timeout,
		Interval: time.Hour, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpguard.Wrap(metrics.New("test").Instrument(p.PublicHandler(""))))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	for _, tc := range []struct {
		name    string
		chunked bool
		first   int           // bytes of the body sent at once
		drip    time.Duration // then one byte per drip (0: the rest at once)
		stop    bool          // send nothing after the first bytes
		want    int
	}{
		{"prompt body", false, -1, 0, false, 202},
		{"headers, then nothing", false, 0, 0, true, 408},
		{"half a body, then nothing", false, 100, 0, true, 408},
		{"dripping body", false, 20, 50 * time.Millisecond, false, 408},
		{"dripping chunked body", true, 20, 50 * time.Millisecond, false, 408},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body, leaf := addLeafBody(t, "slow "+tc.name)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			frame := func(b string) string { return b }
			hdr := fmt.Sprintf("POST /add-leaf HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
			if tc.chunked {
				hdr = "POST /add-leaf HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
				frame = func(b string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(b), b) }
			}
			first := tc.first
			if first < 0 {
				first = len(body)
			}
			if _, err := io.WriteString(conn, hdr+frame(body[:first])); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				if tc.stop {
					return
				}
				for i := first; i < len(body); i++ {
					time.Sleep(tc.drip)
					if _, err := io.WriteString(conn, frame(body[i:i+1])); err != nil {
						return // the server answered and closed
					}
				}
				if tc.chunked {
					io.WriteString(conn, "0\r\n\r\n")
				}
			}()
			start := time.Now()
			rsp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer after %v: %v", time.Since(start).Round(time.Millisecond), err)
			}
			reason, _ := io.ReadAll(rsp.Body)
			rsp.Body.Close()
			if rsp.StatusCode != tc.want {
				t.Fatalf("%d %q, want %d", rsp.StatusCode, reason, tc.want)
			}
			if tc.want == 408 {
				if r := string(reason); !strings.HasSuffix(r, "\n") || strings.Count(r, "\n") != 1 || !strings.Contains(r, "body") {
					t.Errorf("reason %q is not one line about the body", reason)
				}
				if p.pending.has(leaf.Hash()) {
					t.Errorf("the leaf of a timed-out body was queued")
				}
			}
			conn.Close()
			<-done
		})
	}
}
