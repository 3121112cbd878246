package integration

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultMode is what a faultProxy does to the connections it accepts.
type faultMode int32

const (
	faultPass   faultMode = iota // forward both ways
	faultRefuse                  // accept and close at once
	faultHold                    // accept, swallow the request, never answer (a black hole)
	faultDelay                   // forward, each chunk held back for the proxy's delay
	faultCut                     // forward the request, then cut the response halfway through its body
)

func (m faultMode) String() string {
	return [...]string{"pass", "refuse", "hold", "delay", "cut"}[m]
}

// faultProxy is a TCP proxy on loopback in front of one target, injecting faults. Changing the mode closes every
// connection it holds, as a network reset would: the peers must reconnect, and a pooled keep-alive connection
// does not slip through a partition.
type faultProxy struct {
	ln     net.Listener
	target string
	mode   atomic.Int32
	delay  atomic.Int64 // nanoseconds, for faultDelay
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// url is the proxy's URL for an internal listener behind it: TLS goes through (the nodes' keys are pinned end to
// end), so it is https.
func (p *faultProxy) url() string { return "https://" + p.ln.Addr().String() }

// set changes the mode (and the delay for faultDelay) and resets every connection.
func (p *faultProxy) set(m faultMode, delay time.Duration) {
	p.delay.Store(int64(delay))
	p.mode.Store(int32(m))
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

func (p *faultProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track registers c so that set and close can end it; it reports false (and closes c) once the proxy is closed.
func (p *faultProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *faultProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.serve(c, faultMode(p.mode.Load()))
		}()
	}
}

func (p *faultProxy) serve(c net.Conn, m faultMode) {
	switch m {
	case faultRefuse:
		return
	case faultHold:
		io.Copy(io.Discard, c) // until the peer gives up or the mode changes
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return
	}
	if !p.track(up) {
		return
	}
	defer p.untrack(up)
	delay := time.Duration(p.delay.Load())
	if m != faultDelay {
		delay = 0
	}
	done := make(chan struct{}, 2)
	go func() { copyDelayed(up, c, delay); up.Close(); done <- struct{}{} }()
	if m == faultCut {
		cutResponse(c, up)
		c.Close()
		up.Close()
	} else {
		copyDelayed(c, up, delay)
		c.Close()
	}
	<-done
}

// copyDelayed forwards src to dst, holding each chunk back for delay.
func copyDelayed(dst, src net.Conn, delay time.Duration) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if delay > 0 {
				time.Sleep(delay)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cutResponse forwards the response headers and half of the body bytes that came with them, then returns: the
// caller closes both connections, so the client sees a response that ends early.
func cutResponse(dst, src net.Conn) {
	var got []byte
	buf := make([]byte, 32<<10)
	src.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, err := src.Read(buf)
		got = append(got, buf[:n]...)
		if i := bytes.Index(got, []byte("\r\n\r\n")); i >= 0 && (len(got) > i+4 || err != nil) {
			body := len(got) - (i + 4)
			dst.Write(got[:i+4+body/2])
			return
		}
		if err != nil || len(got) > 1<<20 {
			dst.Write(got[:len(got)/2])
			return
		}
	}
}
