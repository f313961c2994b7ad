package buffer

import (
	"testing"

	"go.uber.org/goleak"
)

// Every Buffer starts a writer goroutine and every Shipper a reader; a test
// that forgets to close one fails here.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
