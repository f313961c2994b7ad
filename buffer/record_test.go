package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// sampleRecord is a record with every field set.
func sampleRecord() Record {
	r := Record{
		TimeMs:     1_752_000_000_123,
		DeadLetter: true,
		Key:        []byte("user-42"),
		Value:      []byte(`{"type":"page","payload":{"path":"/"}}`),
	}
	for i := range r.ID {
		r.ID[i] = byte(0xa0 + i)
	}
	return r
}

// fixCRC recomputes the frame's stored CRC, so a test reaches the checks
// behind it.
func fixCRC(frame []byte) []byte {
	binary.LittleEndian.PutUint32(frame[2:6], frameCRC(frame))
	return frame
}

// rawFrame builds a frame field by field with a correct CRC, for encodings
// AppendRecord would never produce.
func rawFrame(version, flags byte, body ...[]byte) []byte {
	f := []byte{version, flags, 0, 0, 0, 0}
	f = append(f, make([]byte, 16)...) // id
	for _, b := range body {
		f = append(f, b...)
	}
	return fixCRC(f)
}

func uv(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func sameRecord(a, b *Record) bool {
	return a.ID == b.ID && a.TimeMs == b.TimeMs && a.DeadLetter == b.DeadLetter &&
		bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value)
}

func fmtRecord(r *Record) string {
	return fmt.Sprintf("{id:%x time:%d dl:%v key:%q value:%.40q (%d bytes)}", r.ID, r.TimeMs, r.DeadLetter, r.Key, r.Value, len(r.Value))
}

func TestRecordRoundTrip(t *testing.T) {
	f := func(in Record) {
		t.Helper()
		frame := AppendRecord(nil, &in)
		if got, want := len(frame), EncodedSize(&in); got != want {
			t.Errorf("%s: AppendRecord wrote %d bytes, EncodedSize says %d", fmtRecord(&in), got, want)
		}
		// Appending after existing bytes leaves them alone and writes the same frame.
		prefix := []byte("prefix")
		out := AppendRecord(bytes.Clone(prefix), &in)
		if !bytes.Equal(out[:len(prefix)], prefix) || !bytes.Equal(out[len(prefix):], frame) {
			t.Errorf("%s: AppendRecord after a prefix wrote %x, want %x after the prefix", fmtRecord(&in), out, frame)
		}
		// Decode into a record whose fields all differ, so a field the decoder
		// forgets to set shows.
		got := Record{TimeMs: -1, DeadLetter: !in.DeadLetter, Key: []byte("stale"), Value: []byte("stale")}
		got.ID[0] = ^in.ID[0]
		if err := DecodeRecord(frame, &got); err != nil {
			t.Fatalf("%s: decode: %v", fmtRecord(&in), err)
		}
		if !sameRecord(&got, &in) {
			t.Errorf("round trip changed the record:\n got  %s\n want %s", fmtRecord(&got), fmtRecord(&in))
		}
	}
	f(Record{})
	f(Record{Key: []byte{}, Value: []byte{}})
	f(Record{Value: []byte("v")})
	f(Record{Key: []byte("k")})
	f(Record{DeadLetter: true})
	f(Record{TimeMs: 1})
	f(Record{TimeMs: 127})
	f(Record{TimeMs: 128})
	f(Record{TimeMs: 1_752_000_000_123})
	f(Record{TimeMs: 1 << 62}) // the largest time the decoder accepts
	f(Record{Key: bytes.Repeat([]byte("k"), 128), Value: bytes.Repeat([]byte("v"), 127)})
	f(Record{Value: bytes.Repeat([]byte{0, 0xff}, 1<<20)}) // 2 MiB value
	f(Record{Key: []byte{0}, Value: []byte{0}})
	f(sampleRecord())
	id := Record{}
	for i := range id.ID {
		id.ID[i] = 0xff
	}
	f(id)
}

func TestEncodedSize(t *testing.T) {
	f := func(in Record, want int) {
		t.Helper()
		if got := EncodedSize(&in); got != want {
			t.Errorf("EncodedSize(%s) = %d, want %d", fmtRecord(&in), got, want)
		}
		if got := len(AppendRecord(nil, &in)); got != want {
			t.Errorf("len(AppendRecord(%s)) = %d, want %d", fmtRecord(&in), got, want)
		}
	}
	f(Record{}, minFrameSize) // header, id, three one-byte uvarints
	f(Record{DeadLetter: true}, minFrameSize)
	f(Record{TimeMs: 127}, minFrameSize)
	f(Record{TimeMs: 128}, minFrameSize+1)
	f(Record{TimeMs: 1 << 62}, minFrameSize+8)
	f(Record{Key: []byte("abc")}, minFrameSize+3)
	f(Record{Value: make([]byte, 127)}, minFrameSize+127)
	f(Record{Value: make([]byte, 128)}, minFrameSize+128+1)
	f(Record{Key: make([]byte, 1<<14), Value: make([]byte, 1<<14)}, minFrameSize+2*(1<<14)+2*2)
}

// The decoded Key and Value alias the frame but are capped, so appending to
// one cannot overwrite the other or the frame.
func TestDecodeRecordCapsSlices(t *testing.T) {
	in := sampleRecord()
	frame := AppendRecord(nil, &in)
	orig := bytes.Clone(frame)
	var r Record
	if err := DecodeRecord(frame, &r); err != nil {
		t.Fatal(err)
	}
	_ = append(r.Key, "XXXXXXXX"...)
	_ = append(r.Value, "XXXXXXXX"...)
	if !bytes.Equal(frame, orig) {
		t.Fatalf("appending to a decoded field changed the frame:\n got  %x\n want %x", frame, orig)
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	in := sampleRecord()
	valid := AppendRecord(nil, &in)
	// The offset of the key length in valid: header, id, time.
	keyLenAt := headerSize + 16 + uvarintLen(uint64(in.TimeMs))

	tests := map[string]struct {
		frame []byte
		msg   string // part of the error message
	}{
		"nil":   {nil, "shorter than the minimum"},
		"empty": {[]byte{}, "shorter than the minimum"},
		// What tidwall/wal returns for an entry in a zero-filled tail: an
		// empty entry; and a zeroed region as long as a real frame.
		"zero-filled minimum":      {make([]byte, minFrameSize), "unknown version 0"},
		"zero-filled frame length": {make([]byte, len(valid)), "unknown version 0"},
		"one byte short of the minimum": {
			rawFrame(recordVersion, 0, uv(0), uv(0))[:minFrameSize-1], "shorter than the minimum",
		},
		"version 0":                         {fixCRC(append([]byte{0}, valid[1:]...)), "unknown version 0"},
		"version 2":                         {fixCRC(append([]byte{2}, valid[1:]...)), "unknown version 2"},
		"flag 0x02":                         {fixCRC(append([]byte{recordVersion, 0x02}, valid[2:]...)), "unknown flags"},
		"flag 0x80":                         {fixCRC(append([]byte{recordVersion, 0x81}, valid[2:]...)), "unknown flags"},
		"stored crc":                        {append(valid[:2:2], append([]byte{^valid[2]}, valid[3:]...)...), "crc"},
		"leftover byte, crc not recomputed": {append(bytes.Clone(valid), 0), "crc"},
		// The CRC covers the longer frame, so only the leftover check can catch it.
		"leftover byte, crc recomputed":  {fixCRC(append(bytes.Clone(valid), 0)), "1 leftover bytes"},
		"leftover bytes, crc recomputed": {fixCRC(append(bytes.Clone(valid), "garbage"...)), "7 leftover bytes"},
		"leftover after empty fields":    {rawFrame(recordVersion, 0, uv(0), uv(0), uv(0), []byte{0}), "1 leftover bytes"},
		"key length overflowing": {
			fixCRC(append(append(bytes.Clone(valid[:keyLenAt]), uv(uint64(len(valid)))...), valid[keyLenAt+1:]...)),
			"key length",
		},
		"key length 2^63":       {rawFrame(recordVersion, 0, uv(0), uv(1<<63), []byte("kv")), "key length"},
		"key length max uint64": {rawFrame(recordVersion, 0, uv(0), uv(1<<64-1), []byte("kv")), "key length"},
		"value length overflowing": {
			rawFrame(recordVersion, 0, uv(0), uv(1), []byte("k"), uv(2), []byte("v")), "value length",
		},
		"value length missing": {rawFrame(recordVersion, 0, uv(0), uv(2), []byte("kv")), "truncated value length"},
		"time truncated": {
			rawFrame(recordVersion, 0, []byte{0x80, 0x80, 0x80}), "truncated time",
		},
		"time overflows 64 bits": {
			rawFrame(recordVersion, 0, bytes.Repeat([]byte{0xff}, 10), []byte{0x7f}, uv(0), uv(0)), "truncated time",
		},
		"time past 2^62":  {rawFrame(recordVersion, 0, uv(1<<62+1), uv(0), uv(0)), "out of range"},
		"negative TimeMs": {AppendRecord(nil, &Record{TimeMs: -1}), "out of range"},
		// The encoder writes every uvarint in its shortest form; a longer one
		// would decode to a record that does not encode back to the same bytes.
		"time not minimal":         {rawFrame(recordVersion, 0, []byte{0x80, 0x00}, uv(0), uv(0)), "time"},
		"key length not minimal":   {rawFrame(recordVersion, 0, uv(0), []byte{0x81, 0x00}, []byte("k"), uv(0)), "key length"},
		"value length not minimal": {rawFrame(recordVersion, 0, uv(0), uv(0), []byte{0x80, 0x80, 0x00}), "value length"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var r Record
			err := DecodeRecord(tc.frame, &r)
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("DecodeRecord(%x) = %v, want ErrBadRecord", tc.frame, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

// Every single-byte change anywhere in a frame fails to decode: CRC-32C
// catches every burst of up to 32 bits.
func TestDecodeRecordRejectsByteFlips(t *testing.T) {
	for _, in := range []Record{{}, sampleRecord(), {Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 300)}} {
		valid := AppendRecord(nil, &in)
		for i := range valid {
			for _, mask := range []byte{0x01, 0x10, 0x80, 0xff} {
				frame := bytes.Clone(valid)
				frame[i] ^= mask
				var r Record
				if err := DecodeRecord(frame, &r); !errors.Is(err, ErrBadRecord) {
					t.Errorf("%s: byte %d ^ %#x: DecodeRecord = %v, want ErrBadRecord", fmtRecord(&in), i, mask, err)
				}
			}
		}
	}
}

// A frame cut short at any length fails, whether or not the CRC was made to
// match the shorter bytes (a torn write that happens to look whole).
func TestDecodeRecordRejectsTruncation(t *testing.T) {
	for _, in := range []Record{{}, sampleRecord(), {TimeMs: 1 << 40, Value: bytes.Repeat([]byte("v"), 200)}} {
		valid := AppendRecord(nil, &in)
		for n := range len(valid) {
			var r Record
			frame := bytes.Clone(valid[:n])
			if err := DecodeRecord(frame, &r); !errors.Is(err, ErrBadRecord) {
				t.Errorf("%s cut to %d of %d bytes: DecodeRecord = %v, want ErrBadRecord", fmtRecord(&in), n, len(valid), err)
			}
			if n < headerSize {
				continue
			}
			if err := DecodeRecord(fixCRC(frame), &r); !errors.Is(err, ErrBadRecord) {
				t.Errorf("%s cut to %d of %d bytes, crc recomputed: DecodeRecord = %v, want ErrBadRecord", fmtRecord(&in), n, len(valid), err)
			}
		}
	}
}
