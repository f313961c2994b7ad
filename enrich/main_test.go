package enrich

import (
	"testing"

	"go.uber.org/goleak"
)

// The pipeline starts worker goroutines: every test must stop them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
