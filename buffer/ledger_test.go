package buffer

import (
	"testing"
	"time"
)

// The ledger balances through every kind of outcome the buffer sees:
// events and dead letters shipped, damaged records skipped, a restart with a
// backlog (recovered), refusals, and records in flight when it is read.
func TestLedgerBalances(t *testing.T) {
	dir := t.TempDir()
	b := openBuffer(t, Config{Dir: dir})
	l := b.Ledger()
	check := func(when string, want LedgerSnapshot) {
		t.Helper()
		if r, a := l.Balance(); r != a {
			t.Fatalf("%s: received %d, accounted for %d: %v", when, r, a, l.Snapshot())
		}
		got := l.Snapshot()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %d, want %d (all %v)", when, k, got[k], v, got)
			}
		}
	}

	// 5 events and 2 dead letters as the pipeline would hand them over.
	l.Received(7)
	if r := appendWait(t, b, testFrames("ev", 0, 5)); r.err != nil {
		t.Fatal(r.err)
	}
	writeRaw(t, b, []byte("damaged")) // a record the disk mangled
	var deadLetters [][]byte
	for i := range 2 {
		r := testRecord("dl", i)
		r.DeadLetter = true
		deadLetters = append(deadLetters, AppendRecord(nil, &r))
	}
	if r := appendWait(t, b, deadLetters); r.err != nil {
		t.Fatal(r.err)
	}
	check("written, not shipped", LedgerSnapshot{"received/http": 7, "buffered": 7})

	// A refused request and a dropped one (the pipeline's calls).
	l.Received(3)
	l.NotWritten(2, ReasonBufferFull, true)
	l.NotWritten(1, ReasonWALWrite, false)
	check("refusals", LedgerSnapshot{"refused/buffer_full": 2, "dropped/wal_write": 1, "buffered": 7})

	sink := newMemSink()
	s := startShipper(t, b, sink, ShipperConfig{CheckpointInterval: time.Hour})
	drain(t, s)
	check("shipped", LedgerSnapshot{
		"shipped/event": 5, "shipped/dead_letter": 2, "dropped/corrupt_record": 1, "buffered": 0,
	})
	s.Close()
	b.Close()

	// Restart with an unshipped backlog: 4 records written before the crash.
	b = openBuffer(t, Config{Dir: dir})
	mustAppend(t, b, "more", 0, 4)
	b.Close()
	b = openBuffer(t, Config{Dir: dir})
	l = b.Ledger()
	check("recovered at open", LedgerSnapshot{"received/recovered": 4, "buffered": 4})
	drain(t, startShipper(t, b, newMemSink(), ShipperConfig{}))
	check("recovered shipped", LedgerSnapshot{"shipped/event": 4, "buffered": 0})
}
