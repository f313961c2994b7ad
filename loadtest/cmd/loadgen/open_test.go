package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func TestMarkedBodies(t *testing.T) {
	for _, per := range []int{1, 20} {
		bodies, _ := buildMarkedBodies(8, per, 3, "run42")
		plain, _ := buildBodies(8, per, 3)
		for i, mb := range bodies {
			if len(mb.offs) != per {
				t.Fatalf("per %d body %d: %d marks", per, i, len(mb.offs))
			}
			buf := append([]byte(nil), mb.body...)
			base := uint64(1000*i) * uint64(per)
			for j, off := range mb.offs {
				putSeq(buf[off:off+markDigits], base+uint64(j))
			}
			var evs []map[string]any
			if per == 1 {
				var ev map[string]any
				if err := json.Unmarshal(buf, &ev); err != nil {
					t.Fatal(err)
				}
				evs = append(evs, ev)
			} else if err := json.Unmarshal(buf, &evs); err != nil {
				t.Fatal(err)
			}
			for j, ev := range evs {
				want := fmt.Sprintf("run42-%012d", base+uint64(j))
				if ev["mark"] != want {
					t.Fatalf("event %d mark %v, want %s", j, ev["mark"], want)
				}
				if seq, ok := parseSeq(buf[mb.offs[j]:]); !ok || seq != base+uint64(j) {
					t.Fatalf("parseSeq = %d %v", seq, ok)
				}
			}
			// The mark is the only difference from the unmarked bodies.
			if len(mb.body) <= len(plain[i]) {
				t.Fatalf("marked body not longer than the plain one")
			}
		}
	}
}

func TestSlotsBefore(t *testing.T) {
	for _, c := range []struct {
		rate float64
		d    time.Duration
		want int64
	}{
		{1000, time.Second, 1000},
		{1000, 0, 0},
		{3.3, time.Second, 4}, // due at 0, 0.303, 0.606, 0.909 s
		{0.5, 4 * time.Second, 2},
		{20000, 5 * time.Second, 100000},
	} {
		if got := slotsBefore(c.rate, c.d); got != c.want {
			t.Errorf("slotsBefore(%v, %v) = %d, want %d", c.rate, c.d, got, c.want)
		}
	}
	o := &openRun{c: &openConfig{rate: 3.3}}
	if d := o.intended(4); d < time.Second || d > time.Second+300*time.Millisecond {
		t.Errorf("request 4 due at %v", d)
	}
}

func TestFirstRequestNumbersMarks(t *testing.T) {
	o := &openRun{c: &openConfig{eventsPerReq: 100, firstRequest: 5000}}
	if got := o.firstSeq(0); got != 500000 {
		t.Errorf("firstSeq(0) = %d, want 500000", got)
	}
	if got := o.firstSeq(7); got != 500700 {
		t.Errorf("firstSeq(7) = %d, want 500700", got)
	}
	o.c.firstRequest = 0
	if got := o.firstSeq(7); got != 700 {
		t.Errorf("without -first-request firstSeq(7) = %d, want 700", got)
	}
}
