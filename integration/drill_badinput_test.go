package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigsumd/sigsumd/internal/httpguard"
	"github.com/sigsumd/sigsumd/pkg/client"
	"github.com/sigsumd/sigsumd/pkg/key"
	"github.com/sigsumd/sigsumd/pkg/sigsum"
)

// badCase is one malformed (or odd) request and the status codes the spec allows for it.
type badCase struct {
	ep     string // endpoint, for the tally
	method string
	url    string
	body   []byte
	hdr    http.Header
	slow   bool             // send the body in small pieces over about a second
	crawl  bool             // send the body in small pieces over about 8 seconds, past the primary's -timeout
	as     *tls.Certificate // the client certificate to present over TLS (the configured secondary's), or none
	want   []int
}

func (c badCase) String() string {
	b := string(c.body)
	if len(b) > 120 {
		b = fmt.Sprintf("%s... (%d bytes)", b[:120], len(b))
	}
	u := c.url
	if len(u) > 200 {
		u = fmt.Sprintf("%s... (%d bytes)", u[:200], len(u))
	}
	h := ""
	for k, vs := range c.hdr {
		for _, v := range vs {
			if len(v) > 60 {
				v = fmt.Sprintf("%s... (%d bytes)", v[:60], len(v))
			}
			h += fmt.Sprintf(" [%s: %q]", k, v)
		}
	}
	slow := ""
	if c.slow {
		slow = " (slow body)"
	}
	if c.crawl {
		slow = " (body over 8 s)"
	}
	return fmt.Sprintf("%s %s%s body %q%s", c.method, u, h, b, slow)
}

// send makes the request and returns the status (0 when no answer came), body and headers.
func (c badCase) send() (int, string, http.Header, error) {
	transport := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	if c.as != nil {
		transport.TLSClientConfig.Certificates = []tls.Certificate{*c.as}
	}
	var body io.Reader = bytes.NewReader(c.body)
	if c.slow || c.crawl {
		pace := 30 * time.Millisecond
		if c.crawl {
			pace = 8 * time.Second / time.Duration(len(c.body)/8+1)
		}
		pr, pw := io.Pipe()
		go func() {
			for i := 0; i < len(c.body); i += 8 {
				time.Sleep(pace)
				if _, err := pw.Write(c.body[i:min(i+8, len(c.body))]); err != nil {
					return
				}
			}
			pw.Close()
		}()
		body = pr
	}
	req, err := http.NewRequest(c.method, c.url, body)
	if err != nil {
		return 0, "", nil, err
	}
	if c.body == nil {
		req.Body, req.ContentLength = nil, 0
	}
	for k, vs := range c.hdr {
		req.Header[k] = vs
	}
	hc := &http.Client{Timeout: 20 * time.Second, Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	rsp, err := hc.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer rsp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(rsp.Body, 1<<20))
	return rsp.StatusCode, string(b), rsp.Header, nil
}

// rawCase is a request written byte for byte on a TCP connection (inside TLS for an internal listener): framing
// errors no HTTP client would send.
type rawCase struct {
	ep   string
	addr string
	tls  *tls.Config // nil: plain TCP
	req  string
	want []int
}

func (c rawCase) send() (int, string, error) {
	var conn net.Conn
	var err error
	if c.tls != nil {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", c.addr, c.tls)
	} else {
		conn, err = net.DialTimeout("tcp", c.addr, 5*time.Second)
	}
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(c.req)); err != nil {
		return 0, "", err
	}
	rsp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", err
	}
	defer rsp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(rsp.Body, 1<<20))
	return rsp.StatusCode, string(b), nil
}

var (
	wrongMethods = []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO", "get"}
	// Integers that break the grammar (0|[1-9][0-9]*, at most 2^63-1), as URL path segments.
	badInts = []string{"-1", "+1", "01", "00", "1.0", "0x1", "1e2", "%201", "1%20", "9223372036854775808",
		"18446744073709551615", "18446744073709551616", "99999999999999999999999999", "-9223372036854775808",
		"%EF%BC%91", "%D9%A3", "%FF", "%FF%FE", "%00", "a", "NaN", "Infinity", "1_0", "0b1", "%0A1", "1%0A", "--1",
		"1,2", "%2B1", "1%00", "%C0%B1", "0.", ".5", "1%2F2"}
)

// badHashes returns malformed leaf hashes (as path segments) built from a good one.
func badHashes(h string) []string {
	return []string{"00", h[:63], h + "0", h + "00", strings.Repeat("g", 64), "zz" + h[2:], h[:31] + "%20" + h[32:],
		"%00" + h[2:], "%FF" + h[2:], "0x" + h[:62], h[:62] + "%0A", strings.Repeat("%FF", 32), h[:32],
		h + h, "-" + h[1:], h[:63] + "%C3%A9"}
}

// TestDrillBadInput sends malformed requests to every endpoint of a primary (public and internal listener) and a
// secondary, with a rate-limit file and a loopback DNS for submit tokens: each gets the spec's status code and a
// one-line reason, none a 500, and the log's state does not change. Then a fake secondary that the primary polls
// serves forged tree heads: none may move the published head.
func TestDrillBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := newNode(t, "primary", filepath.Join(dir, "primary"), "-interval", "150ms", "-timeout", "5s")
	s := newSecondary(t, filepath.Join(dir, "secondary"), p)
	logKey := p.publicKey()
	logPriv, err := key.ReadPrivateKeyFile(filepath.Join(p.dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	logSigner, err := sigsum.NewEd25519Signer(logPriv)
	if err != nil {
		t.Fatal(err)
	}

	// Rate limits: the setup submitter's key may add leaves; example.org and its DNS key may; nolimit.org has a
	// key in DNS but no limit.
	setup, other, tokenKey := newSubmitter(t, 161), newSubmitter(t, 162), newSubmitter(t, 163).signer
	dns := startDNS(t, map[string][]string{
		"_sigsum_v1.example.org.": {tokenKey.Public().String()},
		"_sigsum_v1.nolimit.org.": {tokenKey.Public().String()},
	})
	limits := filepath.Join(p.dir, "rate-limits")
	if err := os.WriteFile(limits, []byte(fmt.Sprintf("key %s 1000\ndomain example.org 1000\n",
		setup.signer.Public().KeyHash())), 0o644); err != nil {
		t.Fatal(err)
	}
	p.extra = append(p.extra, "-rate-limit-file", limits, "-dns-server", dns.addr())

	// The primary's only secondary is a fake that relays the real secondary's head, re-signed with its own key,
	// or serves a forged answer.
	fake := newForger(t, s)
	pubFile := filepath.Join(s.dir, "key.pub")
	f, _ := os.OpenFile(p.configFile(), os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintf(f, "\n[[primary.secondaries]]\nurl = %q\npubkey-file = %q\n", fake.srv.URL, pubFile)
	f.Close()
	s.start()
	p.start()
	tailOnFailure(t, p, s)
	c := p.client()
	leaves := submit(t, c, setup, 6)
	allCommitted(t, c, leaves, 60*time.Second)

	// The state the bad input must not change: the published head, byte for byte, and the primary's tree size.
	state := func() string {
		_, head, _ := rawDo(t, "GET", p.publicURL()+"/get-tree-head", nil, nil)
		code := 0
		if rsp, err := nodeClientHTTP(t, s, p).Get(fmt.Sprintf("%s/get-leaves/%d/%d", p.internalURL(), len(leaves), len(leaves)+1)); err == nil {
			code = rsp.StatusCode
			rsp.Body.Close()
		}
		return fmt.Sprintf("%s(internal get-leaves at the published size: %d)", head, code)
	}
	waitFor(t, "the secondary to catch up", 30*time.Second, func() bool {
		sth, err := s.clientInternal(t).GetSecondaryTreeHead(context.Background())
		return err == nil && sth.Size == uint64(len(leaves))
	})
	before := state()
	if !strings.Contains(before, "size=6\n") || !strings.HasSuffix(before, ": 404)") {
		t.Fatalf("unexpected state before the bad input: %s", before)
	}

	cases, raws := badInputCases(t, p, s, c, logKey, tokenKey, other)
	tally := map[string]int{}
	var mu sync.Mutex
	var failures []string
	var servers500 []string
	check := func(ep, what string, head bool, code int, body string, hdr http.Header, err error, want []int) {
		mu.Lock()
		defer mu.Unlock()
		tally[ep]++
		ok := false
		for _, w := range want {
			ok = ok || w == code
		}
		switch {
		case err != nil && !ok:
			failures = append(failures, fmt.Sprintf("%s: no answer (%v), want %v", what, err, want))
		case code == http.StatusInternalServerError:
			servers500 = append(servers500, fmt.Sprintf("%s → %d %q", what, code, body))
		case !ok:
			failures = append(failures, fmt.Sprintf("%s → %d %q, want %v", what, code, body, want))
		case code >= 400 && !head && (body == "" || strings.Contains(strings.TrimSuffix(body, "\n"), "\n")):
			// (net/http's own answers to framing errors, 431 and the like, are one line without a newline.)
			failures = append(failures, fmt.Sprintf("%s → %d with a reason that is not one line: %q", what, code, body))
		case code >= 400 && (len(body) > httpguard.MaxReason+1 || httpguard.Reason(body) != strings.TrimSuffix(body, "\n")):
			failures = append(failures, fmt.Sprintf("%s → %d with a reason of %d bytes, not one printable line of at most %d: %.300q",
				what, code, len(body), httpguard.MaxReason, body))
		case code == http.StatusMethodNotAllowed && hdr.Get("Allow") == "":
			failures = append(failures, fmt.Sprintf("%s → 405 without an Allow header", what))
		}
	}
	// A few at a time: the slow bodies take a second each.
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, bc := range cases {
		wg.Add(1)
		sem <- struct{}{}
		go func(bc badCase) {
			defer wg.Done()
			defer func() { <-sem }()
			code, body, hdr, err := bc.send()
			if err != nil && len(bc.body) > 0 && (strings.Contains(err.Error(), "broken pipe") ||
				strings.Contains(err.Error(), "connection reset")) {
				// The server answered without reading the body and closed the connection while the client was still
				// sending it: the client never sees the answer. Refusing to read is the point. (Over TLS this
				// happens to a body of a few KiB too: the kernel's buffers no longer absorb it before the close.)
				code, err = bc.want[0], nil
				body = "(closed on an unread body)\n"
				hdr = http.Header{"Allow": {"-"}}
			}
			check(bc.ep, bc.String(), bc.method == "HEAD", code, body, hdr, err, bc.want)
		}(bc)
	}
	wg.Wait()
	for _, rc := range raws {
		code, body, err := rc.send()
		check(rc.ep, fmt.Sprintf("raw %q to %s", rc.req, rc.addr), false, code, body, nil, err, rc.want)
	}
	// A body that stops halfway, abandoned by its client: no answer is owed, nothing may change.
	if conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.public)); err == nil {
		fmt.Fprintf(conn, "POST /add-leaf HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\nmessage=%s", strings.Repeat("a", 40))
		time.Sleep(time.Second)
		conn.Close()
		tally["add-leaf"]++
	}
	time.Sleep(500 * time.Millisecond) // a few rotations
	if after := state(); after != before {
		t.Errorf("the bad input changed the log's state:\nbefore %s\nafter  %s", before, after)
	}
	if !p.alive() || !s.alive() {
		t.Fatalf("a node exited during the bad input:\n%s\n%s", p.tail(), s.tail())
	}
	for _, f := range servers500 {
		t.Errorf("500 for malformed input: %s", f)
	}
	for _, f := range failures {
		t.Errorf("wrong answer: %s", f)
	}
	var eps []string
	total := 0
	for ep, n := range tally {
		eps = append(eps, fmt.Sprintf("%s %d", ep, n))
		total += n
		if n < 40 {
			t.Errorf("only %d malformed requests to %s", n, ep)
		}
	}
	sort.Strings(eps)

	// Forged secondary heads: with three leaves queued and held by the real secondary, no forged answer may move
	// the published head; the relayed true head then does.
	fake.set(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "not now", http.StatusServiceUnavailable) })
	time.Sleep(300 * time.Millisecond) // a rotation in flight finishes
	more := submit(t, c, setup, 3)
	waitFor(t, "the secondary to hold the new leaves", 30*time.Second, func() bool {
		sth, err := s.clientInternal(t).GetSecondaryTreeHead(context.Background())
		return err == nil && sth.Size == uint64(len(leaves)+len(more))
	})
	forged := fake.forgeries(t, logSigner)
	for _, fg := range forged {
		fake.set(fg.serve)
		time.Sleep(450 * time.Millisecond) // three rotations
		if got := treeHead(t, c, logKey); got.Size != uint64(len(leaves)) {
			t.Errorf("forged secondary head %q moved the published head to %d", fg.name, got.Size)
			break
		}
		if !p.alive() {
			t.Fatalf("the primary exited on forged secondary head %q:\n%s", fg.name, p.tail())
		}
	}
	fake.set(nil)
	allCommitted(t, c, append(leaves, more...), 60*time.Second)
	checkLog(t, c, logKey, append(leaves, more...), nil)
	fmt.Printf("bad input drill: %d malformed requests (%s), %d answered 500, %d wrong answers; "+
		"%d forged secondary tree heads refused; log state unchanged\n",
		total, strings.Join(eps, ", "), len(servers500), len(failures), len(forged))
}

// badInputCases builds the table.
func badInputCases(t *testing.T, p, s *node, c *client.Client, logKey sigsum.PublicKey, tokenKey sigsum.Signer,
	other *submitter) ([]badCase, []rawCase) {
	t.Helper()
	pub, in, sec := p.publicURL()+"/", p.internalURL()+"/", s.internalURL()+"/"
	cth := treeHead(t, c, logKey)
	leaves := allLeaves(t, c, cth.Size)
	h2 := leaves[2].Hash().String()
	notIn := sigsum.HashBytes([]byte("not in the log")).String()
	size := fmt.Sprint(cth.Size)
	var cases []badCase
	secondaryCert := nodeCert(t, s)
	add := func(ep, method, url string, body []byte, hdr http.Header, want ...int) {
		bc := badCase{ep: ep, method: method, url: url, body: body, hdr: hdr, want: want}
		if strings.HasPrefix(url, in) {
			bc.as = secondaryCert // the primary's internal API answers its configured secondary only
		}
		cases = append(cases, bc)
	}
	// Who may ask the primary's internal get-leaves: its configured secondary only (PROTOCOL.md §9).
	stranger := nodeCert(t, p) // a node key the primary does not list (its own)
	cases = append(cases,
		badCase{ep: "internal get-leaves", method: "GET", url: in + "get-leaves/0/1", want: []int{403}},
		badCase{ep: "internal get-leaves", method: "GET", url: in + "get-leaves/0/1", as: stranger, want: []int{403}},
		badCase{ep: "internal get-leaves", method: "GET", url: in + "get-leaves/0/1", as: secondaryCert, want: []int{200}},
		badCase{ep: "internal get-leaves", method: "GET", url: strings.Replace(in, "https://", "http://", 1) + "get-leaves/0/1", want: []int{400}},
	)

	// A leaf request whose signature does not verify: the "good" base for add-leaf that changes nothing (403).
	req, _ := other.next(t)
	badSig := *req
	badSig.Signature[0] ^= 1
	badSigBody := badSig.MarshalASCII()

	// What every endpoint gets: wrong methods (with and without a body), odd queries, headers and bodies on its
	// good request, and mangled paths.
	generic := func(ep, base, path, method string, body []byte, code int) {
		url := base + path
		for _, m := range wrongMethods {
			if m == method {
				continue
			}
			add(ep, m, url, nil, nil, 405)
			add(ep, m, url, bytes.Repeat([]byte("x"), 4<<10), nil, 405)
		}
		if method == "POST" {
			add(ep, "GET", url, nil, nil, 405)
			add(ep, "HEAD", url, nil, nil, 405)
		}
		add(ep, method, url+"?"+strings.Repeat("q", 20<<10), body, nil, 431, 414)
		add(ep, method, url+"?x=%FF%FE", body, nil, code)
		add(ep, method, url+"?size=9223372036854775808&start=-1", body, nil, code)
		add(ep, method, url, body, http.Header{"X-Big": {strings.Repeat("h", 20<<10)}}, 431)
		tokCode := code
		if ep == "add-leaf" {
			tokCode = 400 // a malformed sigsum-token is a malformed add-leaf, whatever the leaf
		}
		add(ep, method, url, body, http.Header{"Sigsum-Token": {"garbage"}, "Content-Type": {"\xff\xfe"}}, tokCode)
		add(ep, method, url, body, http.Header{"Accept-Encoding": {"gzip, br"}, "Connection": {"close"}}, code)
		many := http.Header{}
		for i := 0; i < 100; i++ {
			many.Set(fmt.Sprintf("X-H%d", i), "v")
		}
		add(ep, method, url, body, many, code)
		if method == "GET" {
			add(ep, method, url, bytes.Repeat([]byte{0xff}, 100<<10), nil, code) // a body on a GET is ignored
		}
		for _, suffix := range []string{"/", "/x", "/x/y", ";x", ".json", "%2F", "%252F"} {
			add(ep, method, url+suffix, body, nil, 404, 400)
		}
		for _, prefix := range []string{"x", "%FF", "..%2F"} {
			add(ep, method, base+prefix+path, body, nil, 404)
		}
		add(ep, method, base+strings.ToUpper(path)+"X", body, nil, 404)
		// Paths not in canonical form answer 404 with a reason, not Go's ServeMux redirect to the cleaned path.
		odd := []string{"/" + path, "./" + path, "x/../" + path, "%2E/" + path, "x/%2E%2E/" + path, "//" + path,
			path + "/.", path + "/..", path + "/./"}
		if strings.Contains(path, "/") {
			odd = append(odd, strings.Replace(path, "/", "//", 1)) // get-leaves//0/1
		}
		for _, o := range odd {
			add(ep, method, base+o, body, nil, 404, 400)
		}
	}

	// Public: info page, get-tree-head.
	generic("info", pub, "", "GET", nil, 200)
	for _, path := range []string{"index.html", "%00", "%FF", "info", "get-tree-head/..%2F"} {
		add("info", "GET", pub+path, nil, nil, 404, 400)
	}
	add("info", "GET", pub+"..", nil, nil, 404, 400)
	generic("get-tree-head", pub, "get-tree-head", "GET", nil, 200)
	for _, path := range []string{"get-tree-head%00", "get-tree-head%20", "get-tree-head/0", "get-tree-heads",
		"get-tree-head/9223372036854775808"} {
		add("get-tree-head", "GET", pub+path, nil, nil, 404)
	}

	// Public: checkpoint and tiles (Sigsum v1.1, C2SP tlog-tiles).
	generic("checkpoint", pub, "checkpoint", "GET", nil, 200)
	tile0 := "000"
	if cth.Size < 256 {
		tile0 = fmt.Sprintf("000.p/%d", cth.Size)
	}
	generic("tile", pub, "tile/0/"+tile0, "GET", nil, 200)
	generic("tile entries", pub, "tile/entries/"+tile0, "GET", nil, 200)
	for _, path := range []string{"tile/0/0", "tile/0/00", "tile/0/0000", "tile/0/x000", "tile/0/x000/000",
		"tile/0/x001/000", "tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/01", "tile/0/000.p/-1",
		"tile/0/000.p/x", "tile/0/000.p", "tile/8/000", "tile/64/000", "tile/-1/000", "tile/01/000",
		"tile/0/" + strings.Repeat("x999/", 1000) + "999", "tile/entries/000.p/0", "tile/entries/x000",
		"tile/data/000", "tile/0/000.p/1/x", "tile/0", "tile/", "tile/entries/"} {
		add("tile", "GET", pub+path, nil, nil, 400, 404)
	}
	beyond := []string{"tile/0/999", "tile/0/x999/x999/x999/x999/x999/999", "tile/7/000", "tile/entries/999"}
	if cth.Size < 255 {
		beyond = append(beyond, fmt.Sprintf("tile/0/000.p/%d", cth.Size+1), fmt.Sprintf("tile/entries/000.p/%d", cth.Size+1))
	}
	for _, path := range beyond {
		add("tile", "GET", pub+path, nil, nil, 404)
	}

	// Public: get-inclusion-proof/<size>/<hash>.
	ep := "get-inclusion-proof"
	generic(ep, pub, ep+"/"+size+"/"+h2, "GET", nil, 200)
	for _, bad := range badInts {
		add(ep, "GET", pub+ep+"/"+bad+"/"+h2, nil, nil, 400)
	}
	for _, bad := range badHashes(h2) {
		add(ep, "GET", pub+ep+"/"+size+"/"+bad, nil, nil, 400)
	}
	for _, sz := range []string{"0", "1", fmt.Sprint(cth.Size + 1), "9223372036854775807"} {
		add(ep, "GET", pub+ep+"/"+sz+"/"+h2, nil, nil, 400)
	}
	add(ep, "GET", pub+ep+"/"+size+"/"+notIn, nil, nil, 404)
	add(ep, "GET", pub+ep+"/2/"+leaves[3].Hash().String(), nil, nil, 404)
	add(ep, "GET", pub+ep+"/"+size, nil, nil, 404)
	add(ep, "GET", pub+ep+"/"+size+"/"+h2+"/"+h2, nil, nil, 404)
	add(ep, "GET", pub+ep+"/"+strings.Repeat("0", 8000)+"/"+h2, nil, nil, 400)
	add(ep, "GET", pub+ep+"/"+size+"/"+strings.Repeat("ab", 3000), nil, nil, 400)

	// Public: get-consistency-proof/<old>/<new>.
	ep = "get-consistency-proof"
	generic(ep, pub, ep+"/2/"+size, "GET", nil, 200)
	for _, bad := range badInts {
		add(ep, "GET", pub+ep+"/"+bad+"/"+size, nil, nil, 400)
		add(ep, "GET", pub+ep+"/1/"+bad, nil, nil, 400)
	}
	for _, args := range []string{"0/" + size, size + "/" + size, "5/3", "1/" + fmt.Sprint(cth.Size+1),
		"1/9223372036854775807", "9223372036854775806/9223372036854775807", "0/0",
		"1/" + strings.Repeat("0", 8000) + "9", strings.Repeat("%0A9", 2000) + "/" + size} {
		add(ep, "GET", pub+ep+"/"+args, nil, nil, 400)
	}

	// Public and internal: get-leaves/<start>/<end>.
	for _, l := range []struct{ ep, base string }{{"get-leaves", pub}, {"internal get-leaves", in}} {
		generic(l.ep, l.base, "get-leaves/0/"+size, "GET", nil, 200)
		for _, bad := range badInts {
			add(l.ep, "GET", l.base+"get-leaves/"+bad+"/"+size, nil, nil, 400)
			add(l.ep, "GET", l.base+"get-leaves/0/"+bad, nil, nil, 400)
		}
		for _, args := range []string{"3/3", "3/2", "9223372036854775806/9223372036854775807", fmt.Sprintf("%d/%d", cth.Size+1, cth.Size+2)} {
			add(l.ep, "GET", l.base+"get-leaves/"+args, nil, nil, 400)
		}
		atEnd := 400 // public: start at the published size is past the end
		if l.base == in {
			atEnd = 404 // internal: the normal caught-up answer
		}
		add(l.ep, "GET", fmt.Sprintf("%sget-leaves/%d/%d", l.base, cth.Size, cth.Size+1), nil, nil, atEnd)
		add(l.ep, "GET", l.base+"get-leaves/0", nil, nil, 404)
		// Huge arguments: the reason quoting them stays one bounded line.
		add(l.ep, "GET", l.base+"get-leaves/"+strings.Repeat("0", 8000)+"/1", nil, nil, 400)
		add(l.ep, "GET", l.base+"get-leaves/0/"+strings.Repeat("0", 8000)+"1", nil, nil, 400)
		add(l.ep, "GET", l.base+"get-leaves/"+strings.Repeat("%1B%5B31m%FF", 500)+"/1", nil, nil, 400)
	}

	// Public: add-leaf bodies.
	ep = "add-leaf"
	generic(ep, pub, ep, "POST", badSigBody, 403)
	msg, sig, pk := req.Message.String(), req.Signature.String(), req.PublicKey.String()
	line := func(k, v string) string { return k + "=" + v + "\n" }
	good := line("message", msg) + line("signature", sig) + line("public_key", pk)
	for _, body := range []string{
		"", "\n", "\x00", "message", "=\n",
		line("signature", sig) + line("public_key", pk),
		line("message", msg) + line("public_key", pk),
		line("message", msg) + line("signature", sig),
		line("signature", sig) + line("message", msg) + line("public_key", pk),
		line("message", msg) + line("public_key", pk) + line("signature", sig),
		line("message", msg) + good,
		good + line("public_key", pk),
		good + line("message", msg),
		good + "foo=bar\n",
		good + "\n",
		strings.TrimSuffix(good, "\n"),
		strings.ReplaceAll(good, "\n", "\r\n"),
		strings.Replace(good, "message=", "message =", 1),
		strings.Replace(good, "message=", "MESSAGE=", 1),
		strings.Replace(good, "message=", "message==", 1),
		strings.Replace(good, "message=", " message=", 1),
		line("message", msg[:62]) + line("signature", sig) + line("public_key", pk),
		line("message", msg+"00") + line("signature", sig) + line("public_key", pk),
		line("message", "zz"+msg[2:]) + line("signature", sig) + line("public_key", pk),
		line("message", "0x"+msg[:62]) + line("signature", sig) + line("public_key", pk),
		line("message", msg[:31]+" "+msg[32:]) + line("signature", sig) + line("public_key", pk),
		line("message", msg) + line("signature", sig[:126]) + line("public_key", pk),
		line("message", msg) + line("signature", sig+"0") + line("public_key", pk),
		line("message", msg) + line("signature", strings.Repeat("G", 128)) + line("public_key", pk),
		line("message", msg) + line("signature", sig) + line("public_key", pk[:62]),
		line("message", msg) + line("signature", sig) + line("public_key", pk+"00"),
		line("message", msg) + line("signature", sig) + line("public_key", "\xff\xfe"+pk[2:]),
		line("message", msg) + line("signature", sig) + line("public_key", pk+" "+pk),
		line("message", "\xc3\xa9"+msg[2:]) + line("signature", sig) + line("public_key", pk),
		line("message", msg) + line("signature", sig) + line("public_key", pk) + "\xff\n",
		good + strings.Repeat("x", 5000),
		string(bytes.Repeat([]byte("message="+msg+"\n"), 200)),
		"message=" + strings.Repeat("a", 1<<20) + "\n",
		"\xef\xbb\xbf" + good, // a byte order mark
	} {
		add(ep, "POST", pub+ep, []byte(body), nil, 400)
	}
	// Well formed, but not signed right: 403.
	forgedSig := *req
	copy(forgedSig.Signature[:], bytes.Repeat([]byte{1}, 64))
	otherKey := *req
	otherKey.PublicKey = newSubmitter(t, 164).signer.Public()
	otherMsg := *req
	otherMsg.Message = sigsum.HashBytes([]byte("another message"))
	zeroKey := *req
	zeroKey.PublicKey = sigsum.PublicKey{}
	for _, r := range []sigsum.AddLeafRequest{forgedSig, otherKey, otherMsg, zeroKey} {
		add(ep, "POST", pub+ep, r.MarshalASCII(), nil, 403)
	}
	add(ep, "POST", pub+ep, []byte(strings.ToUpper(string(badSigBody))), nil, 400) // keys are lowercase
	// A malformed sigsum-token is refused before the leaf's signature is checked.
	for _, v := range []string{"", "example.org", "example.org zz", "\xff.org " + strings.Repeat("00", 64)} {
		add(ep, "POST", pub+ep, badSigBody, http.Header{"Sigsum-Token": {v}}, 400)
	}
	cases = append(cases,
		badCase{ep: ep, method: "POST", url: pub + ep, body: []byte(line("message", "zz"+msg[2:]) + line("signature", sig) + line("public_key", pk)), slow: true, want: []int{400}},
		badCase{ep: ep, method: "POST", url: pub + ep, body: badSigBody, slow: true, want: []int{403}},
		// A body slower than the primary's -timeout: 408 with a reason, and nothing queued.
		badCase{ep: ep, method: "POST", url: pub + ep, body: badSigBody, crawl: true, want: []int{408}})
	// Submit tokens on a well-signed leaf by a key without a limit of its own.
	valid := req.MarshalASCII()
	tok, _ := sigsum.SignSubmitToken(tokenKey, "example.org", logKey)
	tokHex := hex.EncodeToString(tok.Token[:])
	byOther, _ := sigsum.SignSubmitToken(newSubmitter(t, 165).signer, "example.org", logKey)
	forOtherLog, _ := sigsum.SignSubmitToken(tokenKey, "example.org", newSubmitter(t, 166).signer.Public())
	noLimit, _ := sigsum.SignSubmitToken(tokenKey, "nolimit.org", logKey)
	for _, tc := range []struct {
		v    []string
		want int
	}{
		{nil, 429}, // no token, no limit for this key
		{[]string{""}, 400},
		{[]string{tok.String(), tok.String()}, 400},
		{[]string{"example.org"}, 400},
		{[]string{"example.org "}, 400},
		{[]string{"example.org zz"}, 400},
		{[]string{"example.org " + tokHex[:126]}, 400},
		{[]string{"example.org " + tokHex + "00"}, 400},
		{[]string{" " + tokHex}, 400},
		{[]string{"example.org  " + tokHex}, 400},
		{[]string{"exa mple.org " + tokHex}, 400},
		{[]string{strings.Repeat("a", 300) + ".org " + tokHex}, 400},
		{[]string{"\xff\xfe.org " + tokHex}, 400},
		{[]string{"example..org " + tokHex}, 400},
		{[]string{"unknown.example " + tokHex}, 429}, // no limit for the domain: refused before any DNS lookup
		{[]string{byOther.String()}, 403},
		{[]string{forOtherLog.String()}, 403},
		{[]string{"example.org " + strings.ToUpper(hex.EncodeToString(byOther.Token[:]))}, 403},
		{[]string{noLimit.String()}, 429},
	} {
		var hdr http.Header
		if tc.v != nil {
			hdr = http.Header{"Sigsum-Token": tc.v}
		}
		add(ep, "POST", pub+ep, valid, hdr, tc.want)
	}

	// Secondary: get-secondary-tree-head.
	ep = "get-secondary-tree-head"
	generic(ep, sec, ep, "GET", nil, 200)
	for _, path := range []string{ep + "%00", ep + "%20", ep + "/0", ep + "s", strings.ToUpper(ep), "get-tree-head",
		"add-leaf", "get-leaves/0/1"} {
		add(ep, "GET", sec+path, nil, nil, 404)
	}

	// Framing errors no client would send, on each listener.
	var raws []rawCase
	asSecondary := &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{*secondaryCert}}
	for _, l := range []struct {
		ep, addr, path string
		tls            *tls.Config
	}{
		{"get-tree-head", fmt.Sprintf("127.0.0.1:%d", p.public), "/get-tree-head", nil},
		{"internal get-leaves", fmt.Sprintf("127.0.0.1:%d", p.internal), "/get-leaves/0/1", asSecondary},
		{"get-secondary-tree-head", fmt.Sprintf("127.0.0.1:%d", s.internal), "/get-secondary-tree-head", asSecondary},
	} {
		for _, r := range []struct {
			req  string
			want []int
		}{
			{"GARBAGE\r\n\r\n", []int{400}},
			{"GET " + l.path + " HTTP/9.9\r\nHost: x\r\n\r\n", []int{505, 400}},
			{"GET " + l.path + " HTTP/1.1\r\n\r\n", []int{400}}, // no Host
			{"GET " + l.path + " HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", []int{400}},
			{"GET " + l.path + " HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", []int{400}},
			{"GET " + l.path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", []int{400}},
			{"GET " + l.path + "\x00 HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
			{"GET " + l.path + " HTTP/1.1\r\nHost: x\r\nX: \x00\r\n\r\n", []int{400}},
			// Both framings: Go drops Content-Length and never reads a GET's body.
			{"GET " + l.path + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nzz\r\n", []int{400, 200}},
			{"GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}},
		} {
			raws = append(raws, rawCase{ep: l.ep, addr: l.addr, tls: l.tls, req: r.req, want: r.want})
		}
	}
	return cases, raws
}

// forger is a fake secondary: it relays the real secondary's head re-signed with its own key, or serves a forgery.
type forger struct {
	signer    sigsum.Signer
	real      *client.Client
	url       string // the real secondary's internal URL
	publicURL string // and its public one
	mu        sync.Mutex
	serve     http.HandlerFunc // nil: relay
	srv       *httptest.Server
}

func newForger(t *testing.T, s *node) *forger {
	t.Helper()
	// The forger is a configured secondary gone bad: it holds the real secondary's node key (so the primary lets
	// the real one replicate, and talks to the forger over TLS pinned to that key) and signs what it likes with it.
	fg := &forger{signer: loadNodeSigner(t, s), real: s.clientInternal(t), url: s.internalURL(), publicURL: s.publicURL()}
	fg.srv = startNodeServer(t, fg.signer, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fg.mu.Lock()
		serve := fg.serve
		fg.mu.Unlock()
		if serve != nil {
			serve(w, r)
			return
		}
		sth, err := fg.real.GetSecondaryTreeHead(r.Context())
		if err != nil {
			http.Error(w, "real secondary unreachable", http.StatusServiceUnavailable)
			return
		}
		re, err := sth.TreeHead.Sign(fg.signer)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(re.MarshalASCII())
	}))
	return fg
}

func (fg *forger) set(serve http.HandlerFunc) {
	fg.mu.Lock()
	fg.serve = serve
	fg.mu.Unlock()
}

type forgery struct {
	name  string
	serve http.HandlerFunc
}

// forgeries returns answers no primary may count: the true head of the real secondary (which holds more than
// is published) mangled in every way, signed by the wrong key, for the wrong origin, or not an answer at all.
func (fg *forger) forgeries(t *testing.T, logSigner sigsum.Signer) []forgery {
	t.Helper()
	truth, err := fg.real.GetSecondaryTreeHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	th := truth.TreeHead
	body := func(b []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { w.Write(b) }
	}
	signed := func(th sigsum.TreeHead, s sigsum.Signer) []byte {
		sth, err := th.Sign(s)
		if err != nil {
			t.Fatal(err)
		}
		return sth.MarshalASCII()
	}
	good := signed(th, fg.signer)
	badSig, err := th.Sign(fg.signer)
	if err != nil {
		t.Fatal(err)
	}
	badSig.Signature[0] ^= 1
	wrongOrigin := sigsum.SignedTreeHead{TreeHead: th}
	if wrongOrigin.Signature, err = fg.signer.Sign(th.Checkpoint(sigsum.Origin(logSigner.Public()))); err != nil {
		t.Fatal(err)
	}
	flipped := th
	flipped.RootHash[0] ^= 1
	bigger := th
	bigger.Size++
	smaller := th
	smaller.Size = 2 // below the published size
	huge := th
	huge.Size = 1<<63 - 1
	return []forgery{
		{"signed by another key (not the configured one)", body(signed(th, newSubmitter(t, 171).signer))},
		{"signed by the log's key", body(signed(th, logSigner))},
		{"signed for the log's origin", body(wrongOrigin.MarshalASCII())},
		{"signature bit flipped", body(badSig.MarshalASCII())},
		{"root bit flipped", body(signed(flipped, fg.signer))},
		{"size beyond the primary's tree", body(signed(bigger, fg.signer))},
		{"size below the published size", body(signed(smaller, fg.signer))},
		{"size 2^63-1", body(signed(huge, fg.signer))},
		{"size 2^63", body(bytes.Replace(good, []byte(fmt.Sprintf("size=%d", th.Size)), []byte("size=9223372036854775808"), 1))},
		{"truncated", body(good[:len(good)/2])},
		{"trailing line", body(append(append([]byte{}, good...), "size=1\n"...))},
		{"CRLF", body(bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n")))},
		{"duplicate size line", body(append([]byte(fmt.Sprintf("size=%d\n", th.Size)), good...))},
		{"empty 200", body(nil)},
		{"garbage", body([]byte("\xff\xfe\x00 not a tree head"))},
		{"8 MiB body", body(bytes.Repeat([]byte("size=1\n"), 8<<20/7))},
		{"500", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }},
		{"404", func(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) }},
		{"redirect to the real secondary's plain-HTTP public listener", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, fg.publicURL+"/get-secondary-tree-head", http.StatusFound)
		}},
		{"answers after the primary's timeout", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(6 * time.Second):
				w.Write(good)
			case <-r.Context().Done():
			}
		}},
	}
}
