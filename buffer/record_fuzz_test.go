package buffer

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeRecord checks that DecodeRecord never panics, fails only with
// ErrBadRecord, and accepts only frames AppendRecord writes byte for byte:
// the encoding has one form per record. Random bytes almost never carry a
// matching CRC, so each input is also decoded with its CRC recomputed, which
// lets the fuzzer reach the field parsing behind the checksum.
// The seed corpus is in testdata/fuzz/FuzzDecodeRecord.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range []Record{{}, sampleRecord(), {TimeMs: 1 << 62, Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 200)}} {
		f.Add(AppendRecord(nil, &r))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
		if len(data) >= headerSize {
			checkDecode(t, fixCRC(bytes.Clone(data)))
		}
	})
}

func checkDecode(t *testing.T, frame []byte) {
	t.Helper()
	orig := bytes.Clone(frame)
	var r Record
	err := DecodeRecord(frame, &r)
	if !bytes.Equal(frame, orig) {
		t.Fatalf("DecodeRecord modified its input: %x became %x", orig, frame)
	}
	if err != nil {
		if !errors.Is(err, ErrBadRecord) {
			t.Fatalf("DecodeRecord(%x) = %v, which does not wrap ErrBadRecord", frame, err)
		}
		return
	}
	if got := AppendRecord(nil, &r); !bytes.Equal(got, frame) {
		t.Fatalf("DecodeRecord accepted %x as %s, which encodes as %x", frame, fmtRecord(&r), got)
	}
	if n := EncodedSize(&r); n != len(frame) {
		t.Fatalf("EncodedSize(%s) = %d, frame has %d bytes", fmtRecord(&r), n, len(frame))
	}
}
