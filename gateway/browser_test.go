package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"
)

// browserPage sends one event by each browser transport, from a page on
// another origin than the gateway's: sendBeacon with a string, with
// URLSearchParams and with FormData, fetch with keepalive and a JSON body
// (preflighted, credentialed), and an image pixel. The title reports the
// fetch's status, so the test knows the page ran.
const browserPage = `<!doctype html><title>loading</title><script>
const gw = "http://%[1]s", run = "%[2]s";
const u = gw + "/v1/beacon";
navigator.sendBeacon(u, JSON.stringify({type: "browser", via: "beacon-string", run}));
const p = new URLSearchParams(); p.set("type", "browser"); p.set("via", "beacon-form"); p.set("run", run);
navigator.sendBeacon(u, p);
const f = new FormData(); f.set("type", "browser"); f.set("via", "beacon-multipart"); f.set("run", run);
navigator.sendBeacon(u, f);
new Image().src = gw + "/v1/pixel.gif?type=browser&via=pixel&run=" + run;
fetch(u, {method: "POST", keepalive: true, credentials: "include", headers: {"Content-Type": "application/json"},
  body: JSON.stringify({type: "browser", via: "fetch-keepalive", run})})
  .then(r => { document.title = "fetch " + r.status; }, e => { document.title = "fetch failed: " + e; });
</script>`

// chromium finds Debian's Chromium. CI must have it (.ci/run installs it with
// make browser-deps); elsewhere the test is skipped with a hint.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no Chromium on the CI machine: .ci/run installs it with make browser-deps")
	}
	t.Skip("no Chromium here: make browser-deps installs Debian's (root)")
	return ""
}

// TestBrowserTransports loads a page from another origin in headless
// Chromium and finds the event of every transport in Kafka.
func TestBrowserTransports(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	exe := chromium(t)
	st := startStack(t, "browser")
	defer st.close(t)
	gw, emb := st.gw, st.emb

	run := fmt.Sprintf("run-%d", time.Now().UnixNano())
	ln, err := net.Listen("tcp", "127.0.0.1:0") // another port: another origin
	if err != nil {
		t.Fatal(err)
	}
	page := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, browserPage, gw.Addr(), run)
	})}
	go page.Serve(ln)
	defer page.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("headless", true), chromedp.Flag("disable-gpu", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	bctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(bctx, chromedp.Navigate("http://"+ln.Addr().String()+"/")); err != nil {
		t.Fatalf("browser: navigate: %v", err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`document.title.startsWith("fetch")`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("browser: the page did not finish: %v", err)
	}
	title, err := chromedp.Run(bctx, chromedp.Title())
	if err != nil {
		t.Fatalf("browser: title: %v", err)
	}
	if title != "fetch 204" {
		t.Fatalf("the page's fetch ended with %q, want a readable 204 (CORS with credentials)", title)
	}

	want := []string{"beacon-string", "beacon-form", "beacon-multipart", "fetch-keepalive", "pixel"}
	got := consumeVia(t, emb.Addrs(), run, len(want))
	for _, via := range want {
		if got[via] != 1 {
			t.Errorf("transport %s: %d events in Kafka, want 1 (all: %v)", via, got[via], got)
		}
	}
}

// consumeVia reads beacons until n events of this run arrived and counts
// them by their payload's via field.
func consumeVia(t *testing.T, brokers []string, run string, n int) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("beacons"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for total := 0; total < n; {
		if time.Now().After(deadline) {
			t.Fatalf("found %v before the deadline, want %d events", got, n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			var env struct {
				Payload struct{ Via, Run string } `json:"payload"`
			}
			if json.Unmarshal(r.Value, &env) == nil && env.Payload.Run == run && strings.TrimSpace(env.Payload.Via) != "" {
				got[env.Payload.Via]++
				total++
			}
		})
	}
	return got
}
