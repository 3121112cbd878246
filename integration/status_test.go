package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// envChromium names the Chromium binary that drives the status page test in a real browser (.ci/run sets it when
// it installed Debian's chromium); unset, the browser part does not run.
const envChromium = "SIGSUMD_TEST_CHROMIUM"

// envArtifacts is where tests write artifacts (the status page's screenshot); default: a directory under the
// system's temporary directory, named in the test's log.
const envArtifacts = "SIGSUMD_TEST_ARTIFACTS"

// TestStatusPage reads the status of a primary with one secondary and one witness as an operator would: with
// `sigsumctl status -url` on both nodes and, when Chromium is available, the primary's page in a headless browser,
// whose DOM must show the facts and of which a screenshot is kept.
func TestStatusPage(t *testing.T) {
	t.Parallel()
	cl, ws := witnessCluster(t, "group g 1 w1", "w1")
	ws[0].start()
	cl.start()
	c := cl.primary.client()
	leaves := submit(t, c, newSubmitter(t, 41), 2)
	allCommitted(t, c, leaves, 60*time.Second)
	waitFor(t, "a head of 2 leaves cosigned by w1", 30*time.Second, func() bool {
		cth := treeHead(t, c, cl.logKey)
		return cth.Size == 2 && checkCosigned(t, cth, cl.logKey, ws)["w1"]
	})
	sec := cl.secondaries[0]

	primary := ctl(t, "status", "-url", cl.primary.publicURL())
	for _, want := range []string{"role=primary\n", "ready=true\n", "published_size=2\n", "published_cosignatures=1\n",
		"local_size=2\n", "witness=w1 in_published=true cosigned_size=2", "secondary=" + sec.internalURL() + " asked=true verified_size=2 lag=0",
		"rate_limit=off\n", "log_key_hash=" + cl.logKey.KeyHash().String() + "\n"} {
		if !strings.Contains(primary, want) {
			t.Errorf("sigsumctl status -url (primary) lacks %q:\n%s", want, primary)
		}
	}
	var secondary string
	waitFor(t, "the secondary to confirm the published head", 30*time.Second, func() bool {
		secondary = ctl(t, "status", "-url", sec.publicURL()+"/")
		return strings.Contains(secondary, "published_size=2\n")
	})
	for _, want := range []string{"role=secondary\n", "ready=true\n", "local_size=2\n", "replication_lag=0\n",
		"primary_url=" + cl.primary.internalURL() + "\n", "node_key_hash=" + sec.publicKey().KeyHash().String() + "\n"} {
		if !strings.Contains(secondary, want) {
			t.Errorf("sigsumctl status -url (secondary) lacks %q:\n%s", want, secondary)
		}
	}
	// Not a node: a clear error, not a parse of someone else's page.
	out, err := exec.Command(filepath.Join(binDir, "sigsumctl"), "status", "-url", cl.primary.publicURL()+"/get-tree-head").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "404") {
		t.Errorf("sigsumctl status -url on a wrong path: %v\n%s", err, out)
	}

	browser := os.Getenv(envChromium)
	if browser == "" {
		t.Logf("the status page was not loaded in a browser: set %s to a Chromium binary", envChromium)
		return
	}
	dir := os.Getenv(envArtifacts)
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "sigsumd-test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	chromium := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		profile := t.TempDir()
		args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--no-first-run", "--user-data-dir=" + profile, "--window-size=1200,1400"}, args...)
		cmd := exec.CommandContext(ctx, browser, args...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %s: %v\n%s", browser, strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
	page := cl.primary.publicURL() + "/"
	dom := chromium("--dump-dom", page)
	for _, want := range []string{
		`<span id="role">primary</span>`,
		`id="readiness" class="badge ok">ready</span>`,
		`<b id="published-size">2</b>`,
		`<code id="log-key-hash">` + cl.logKey.KeyHash().String() + `</code>`,
		`data-witness="w1"`,
		"size 2, ",
		fmt.Sprintf(`data-secondary="%s"`, sec.internalURL()),
		`<td>2</td>`,
		`id="rate-limit">off`,
		`href="get-tree-head"`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the browser's DOM of the status page lacks %q", want)
		}
	}
	shot := filepath.Join(dir, "status-primary.png")
	chromium("--screenshot="+shot, page)
	if st, err := os.Stat(shot); err != nil || st.Size() < 1000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("status page screenshot: %s", shot)
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}
