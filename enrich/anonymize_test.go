package enrich

import (
	"net/netip"
	"strings"
	"testing"
)

func TestIPAnonymizer(t *testing.T) {
	salt := []byte("0123456789abcdef-secret")
	keep, _ := NewIPAnonymizer("none", nil)
	trunc, _ := NewIPAnonymizer("truncate", nil)
	hash, err := NewIPAnonymizer("hash", salt)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewIPAnonymizer("hash", []byte("another-secret-salt!"))
	v4, v6 := netip.MustParseAddr("203.0.113.77"), netip.MustParseAddr("2001:db8:abcd:12:34:56:78:9a")
	for _, tc := range []struct {
		z    IPAnonymizer
		a    netip.Addr
		want string
	}{
		{keep, v4, "203.0.113.77"},
		{IPAnonymizer{}, v6, "2001:db8:abcd:12:34:56:78:9a"},
		{trunc, v4, "203.0.113.0"},
		{trunc, v6, "2001:db8:abcd::"},
	} {
		if got := tc.z.Apply(tc.a); got != tc.want {
			t.Errorf("%s.Apply(%s) = %s, want %s", tc.z.mode, tc.a, got, tc.want)
		}
	}
	h1, h2 := hash.Apply(v4), hash.Apply(v4)
	if h1 != h2 || len(h1) != 32 || strings.Contains(h1, "203") {
		t.Errorf("hash %q, %q: want a stable 32-hex-digit hash without the address", h1, h2)
	}
	if hash.Apply(netip.MustParseAddr("203.0.113.78")) == h1 || other.Apply(v4) == h1 {
		t.Error("the hash does not depend on the address and the salt")
	}
	for _, bad := range []struct {
		mode string
		salt []byte
	}{{"hash", nil}, {"hash", []byte("short")}, {"scramble", nil}} {
		if _, err := NewIPAnonymizer(bad.mode, bad.salt); err == nil {
			t.Errorf("NewIPAnonymizer(%q, %d-byte salt) accepted", bad.mode, len(bad.salt))
		}
	}
}

// The envelope, and so the WAL, never holds the full address when
// anonymizing: checked on what the pipeline hands to the buffer.
func TestPipelineAnonymizesBeforeTheWAL(t *testing.T) {
	app := &fakeAppender{t: t}
	z, _ := NewIPAnonymizer("truncate", nil)
	p := newPipeline(t, app, Config{Workers: 1, IP: z})
	done, doneCh := doneChan()
	b := &Batch{Meta: Meta{RemoteAddr: netip.MustParseAddr("198.51.100.23")}, Events: []Event{mustEvent(t, `{"type":"t"}`)}, Done: done}
	if err := p.Submit(b); err != nil {
		t.Fatal(err)
	}
	if err := <-doneCh; err != nil {
		t.Fatal(err)
	}
	for _, f := range app.Calls()[0].frames {
		if strings.Contains(string(f), "198.51.100.23") {
			t.Fatalf("the full address reached the WAL frame: %q", f)
		}
	}
	c := decodeValue(t, &app.Calls()[0].recs[0])["context"].(map[string]any)
	if c["ip"] != "198.51.100.0" {
		t.Errorf("ip %v, want 198.51.100.0", c["ip"])
	}
}
