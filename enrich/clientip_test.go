package enrich

import (
	"net/netip"
	"slices"
	"testing"
)

func TestParseTrustedProxies(t *testing.T) {
	f := func(s string, want ...string) {
		t.Helper()
		got, err := ParseTrustedProxies(s)
		if err != nil {
			t.Fatalf("ParseTrustedProxies(%q): %v", s, err)
		}
		var gotS []string
		for _, p := range got {
			gotS = append(gotS, p.String())
		}
		if !slices.Equal(gotS, want) {
			t.Fatalf("ParseTrustedProxies(%q) = %q, want %q", s, gotS, want)
		}
	}
	f("")
	f(" , ,, ")
	f("10.0.0.0/8", "10.0.0.0/8")
	f("10.0.0.0/8,192.168.0.0/16", "10.0.0.0/8", "192.168.0.0/16")
	f(" 10.0.0.0/8 ,\t172.16.0.0/12 ", "10.0.0.0/8", "172.16.0.0/12")
	// Host bits are masked off.
	f("10.1.2.3/8", "10.0.0.0/8")
	f("fd00::1/8", "fd00::/8")
	// Bare addresses are single-host prefixes.
	f("127.0.0.1", "127.0.0.1/32")
	f("::1", "::1/128")
	f("2001:db8::5, 203.0.113.7", "2001:db8::5/128", "203.0.113.7/32")
	// A bare IPv4-mapped address means the IPv4 host.
	f("::ffff:10.0.0.1", "10.0.0.1/32")
	// Trailing commas are fine.
	f("10.0.0.0/8,", "10.0.0.0/8")

	bad := func(s string) {
		t.Helper()
		got, err := ParseTrustedProxies(s)
		if err == nil {
			t.Fatalf("ParseTrustedProxies(%q) = %v, want an error", s, got)
		}
		if got != nil {
			t.Fatalf("ParseTrustedProxies(%q) returned %v with the error", s, got)
		}
	}
	bad("garbage")
	bad("10.0.0.0/8,garbage")
	bad("10.0.0.0/33")
	bad("10.0.0.0/")
	bad("/8")
	bad("300.0.0.1")
	bad("10.0.0.1:80")
	bad("example.com")
	bad("::1/129")
}

func TestClientIP(t *testing.T) {
	tp, err := ParseTrustedProxies("10.0.0.0/8, 192.168.1.1, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	f := func(remote, xff, want string) {
		t.Helper()
		got := tp.ClientIP(netip.MustParseAddr(remote), xff)
		if got != netip.MustParseAddr(want) {
			t.Fatalf("ClientIP(%s, %q) = %s, want %s", remote, xff, got, want)
		}
	}

	// An untrusted peer is the client; its X-Forwarded-For is ignored.
	f("203.0.113.9", "", "203.0.113.9")
	f("203.0.113.9", "198.51.100.1", "203.0.113.9")
	f("2001:db8::9", "198.51.100.1, 10.0.0.1", "2001:db8::9")

	// A trusted peer without X-Forwarded-For is the client.
	f("10.0.0.1", "", "10.0.0.1")

	// A trusted peer: the rightmost hop that is not a trusted proxy. Hops
	// left of it could be forged by the client and are never believed.
	f("10.0.0.1", "198.51.100.1", "198.51.100.1")
	f("10.0.0.1", "1.1.1.1, 198.51.100.1", "198.51.100.1")
	f("10.0.0.1", "1.1.1.1, 198.51.100.1, 10.2.3.4, 192.168.1.1", "198.51.100.1")
	f("192.168.1.1", "  198.51.100.1  ,10.9.9.9 ", "198.51.100.1")
	f("fd00::1", "2001:db8::1, fd00::2", "2001:db8::1")
	f("10.0.0.1", "2001:db8::1", "2001:db8::1")

	// Every hop is trusted: the leftmost one is as far as we can see.
	f("10.0.0.1", "10.0.0.2", "10.0.0.2")
	f("10.0.0.1", "10.0.0.3, 192.168.1.1, 10.0.0.2", "10.0.0.3")

	// A garbled hop stops the walk at the last good address.
	f("10.0.0.1", "garbage", "10.0.0.1")
	f("10.0.0.1", "198.51.100.1, garbage", "10.0.0.1")
	f("10.0.0.1", "198.51.100.1, garbage, 10.0.0.2", "10.0.0.2")
	f("10.0.0.1", "198.51.100.1, , 10.0.0.2", "10.0.0.2")
	f("10.0.0.1", "198.51.100.1,", "10.0.0.1")
	f("10.0.0.1", "unknown, 10.0.0.2", "10.0.0.2")
	// ...but a garbled hop left of the client is never looked at.
	f("10.0.0.1", "garbage, 198.51.100.1", "198.51.100.1")

	// "addr:port" and "[v6]:port" hops.
	f("10.0.0.1", "198.51.100.1:4711", "198.51.100.1")
	f("10.0.0.1", "[2001:db8::7]:443", "2001:db8::7")
	f("10.0.0.1", "198.51.100.1, 10.0.0.2:8080", "198.51.100.1")
	f("10.0.0.1", "198.51.100.1, [fd00::2]:8080", "198.51.100.1")
	// An IPv4-mapped hop is unmapped.
	f("10.0.0.1", "::ffff:198.51.100.1", "198.51.100.1")
	f("10.0.0.1", "::ffff:10.0.0.7", "10.0.0.7")

	// An IPv4-mapped IPv6 peer (a dual-stack listener) is unmapped, both as
	// the answer and when checking whether it is trusted.
	f("::ffff:203.0.113.9", "", "203.0.113.9")
	f("::ffff:203.0.113.9", "198.51.100.1", "203.0.113.9")
	f("::ffff:10.0.0.1", "198.51.100.1", "198.51.100.1")
	f("::ffff:192.168.1.1", "198.51.100.1, 192.168.1.1", "198.51.100.1")
}

func TestClientIPNoProxies(t *testing.T) {
	var tp TrustedProxies
	got := tp.ClientIP(netip.MustParseAddr("10.0.0.1"), "198.51.100.1")
	if want := netip.MustParseAddr("10.0.0.1"); got != want {
		t.Fatalf("ClientIP with no trusted proxies = %s, want the peer %s", got, want)
	}
	if got := tp.ClientIP(netip.Addr{}, "198.51.100.1"); got.IsValid() {
		t.Fatalf("ClientIP of the zero peer = %s, want the zero Addr", got)
	}
}
