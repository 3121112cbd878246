package integration

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// readHeaderTimeout is the public listener's http.Server.ReadHeaderTimeout (internal/node).
const readHeaderTimeout = 10 * time.Second

// slowConn is one connection that sends a request one byte per second and never finishes it.
type slowConn struct {
	conn     net.Conn
	opened   time.Time
	closedAt time.Time // when the server closed it; zero while open
	sent     int
}

// TestOpsSlowClients holds 200 connections that trickle a request one byte per second against a real primary,
// shows that normal requests are answered promptly meanwhile, and that the server cuts every slow connection at
// its read-header timeout.
func TestOpsSlowClients(t *testing.T) {
	t.Parallel()
	const nslow = 200
	p := newNode(t, "primary", filepath.Join(t.TempDir(), "primary"), "-interval", "300ms")
	p.start()
	logKey := p.publicKey()
	addr := fmt.Sprintf("127.0.0.1:%d", p.public)

	// An endless request: a request line, then a header whose value never ends.
	request := "GET /get-tree-head HTTP/1.1\r\nHost: " + addr + "\r\nX-Slow: " + strings.Repeat("a", 1000)
	var mu sync.Mutex
	conns := make([]*slowConn, nslow)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range conns {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("slow connection %d: %v", i, err)
		}
		sc := &slowConn{conn: c, opened: time.Now()}
		conns[i] = sc
		t.Cleanup(func() { c.Close() })
		// The reader sees the server close the connection (EOF, or a reset). It reads anything the server
		// might write first (a 408) and notes the time of the close.
		wg.Add(2)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for {
				if _, err := c.Read(buf); err != nil {
					mu.Lock()
					sc.closedAt = time.Now()
					mu.Unlock()
					return
				}
			}
		}()
		// The writer sends one byte a second until the server closes or the test ends.
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for i := 0; i < len(request); i++ {
				if _, err := c.Write([]byte{request[i]}); err != nil {
					return
				}
				mu.Lock()
				sc.sent++
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	start := time.Now()
	t.Logf("holding %d slow connections", nslow)

	// Meanwhile normal requests are answered promptly: a tree head and a new leaf, every 250 ms, until every
	// slow connection is gone or the deadline passes.
	c := opsClient(t, p, 5*time.Second)
	sub := newSubmitter(t, 61)
	var leaves []submitted
	var worst time.Duration
	requests := 0
	allClosed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, sc := range conns {
			if sc.closedAt.IsZero() {
				return false
			}
		}
		return true
	}
	const promptly = 3 * time.Second // generous: race-built binaries on a shared machine
	deadline := start.Add(readHeaderTimeout + 10*time.Second)
	for !allClosed() && time.Now().Before(deadline) {
		t0 := time.Now()
		treeHead(t, c, logKey)
		req, leaf := sub.next(t)
		if _, err := c.AddLeaf(context.Background(), req, nil); err != nil {
			t.Fatalf("add-leaf while %d slow connections are held: %v", nslow, err)
		}
		leaves = append(leaves, submitted{req, leaf})
		d := time.Since(t0)
		worst = max(worst, d)
		requests++
		if d > promptly {
			t.Errorf("get-tree-head + add-leaf took %v with slow connections held", d)
		}
		time.Sleep(250 * time.Millisecond)
	}
	close(stop)
	t.Logf("%d rounds of get-tree-head + add-leaf during the slow connections, slowest %v", requests, worst)

	mu.Lock()
	var closed []time.Duration
	maxSent := 0
	for _, sc := range conns {
		maxSent = max(maxSent, sc.sent)
		if !sc.closedAt.IsZero() {
			closed = append(closed, sc.closedAt.Sub(sc.opened))
		}
	}
	mu.Unlock()
	sort.Slice(closed, func(i, j int) bool { return closed[i] < closed[j] })
	t.Logf("server closed %d of %d slow connections; most bytes sent on one: %d", len(closed), nslow, maxSent)
	if len(closed) != nslow {
		t.Fatalf("server closed only %d of %d slow connections within %v", len(closed), nslow, readHeaderTimeout+10*time.Second)
	}
	t.Logf("closed after %v (first) .. %v (median) .. %v (last)", closed[0], closed[len(closed)/2], closed[len(closed)-1])
	// Cut at the read-header timeout: not before it (the server did not just refuse them), and not long after.
	if closed[0] < readHeaderTimeout-time.Second || closed[len(closed)-1] > readHeaderTimeout+5*time.Second {
		t.Errorf("slow connections closed between %v and %v after opening, want about %v",
			closed[0], closed[len(closed)-1], readHeaderTimeout)
	}
	for _, sc := range conns {
		sc.conn.Close()
	}
	wg.Wait()

	// The leaves added meanwhile are committed as usual.
	allCommitted(t, c, leaves, 60*time.Second)
	checkLog(t, c, logKey, leaves, nil)
}
