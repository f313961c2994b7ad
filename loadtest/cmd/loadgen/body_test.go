package main

import (
	"encoding/json"
	"testing"
)

func TestBodiesAreValidBeacons(t *testing.T) {
	for _, per := range []int{1, 20} {
		bodies, mean := buildBodies(50, per, 7)
		if len(bodies) != 50 || mean < 300*per {
			t.Fatalf("per %d: %d bodies of mean %d bytes", per, len(bodies), mean)
		}
		for _, b := range bodies {
			var evs []map[string]any
			if per == 1 {
				var ev map[string]any
				if err := json.Unmarshal(b, &ev); err != nil {
					t.Fatal(err)
				}
				evs = append(evs, ev)
			} else if err := json.Unmarshal(b, &evs); err != nil {
				t.Fatal(err)
			}
			if len(evs) != per {
				t.Fatalf("%d events, want %d", len(evs), per)
			}
			for _, ev := range evs {
				if ev["type"] != "page_view" || ev["anonymous_id"] == "" {
					t.Fatalf("bad event %v", ev)
				}
				p, _ := json.Marshal(ev["props"])
				if len(p) < 170 || len(p) > 260 {
					t.Errorf("props is %d bytes, want about 200: %s", len(p), p)
				}
			}
		}
	}
	b, _ := buildBodies(1, 1, 1)
	t.Logf("%s", b[0])
}
