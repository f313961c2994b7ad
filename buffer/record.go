package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Record is one event as the buffer stores it and the shipper sends it. The
// buffer treats Key and Value as opaque bytes; the enrich package decides what
// they hold.
type Record struct {
	// ID is the gateway-assigned event id (a UUIDv7), carried as a Kafka header
	// so consumers can deduplicate.
	ID [16]byte
	// TimeMs is when the gateway received the event, in Unix milliseconds; it
	// lets the shipper report the age of the oldest unshipped event.
	TimeMs int64
	// DeadLetter routes the record to the dead-letter topic instead of the main one.
	DeadLetter bool
	Key        []byte
	Value      []byte
}

// Frame layout (all integers little endian or uvarint):
//
//	[0]     version (recordVersion)
//	[1]     flags   (flagDeadLetter)
//	[2:6]   CRC-32C (Castagnoli) of bytes [0:2] followed by bytes [6:]
//	[6:22]  id
//	uvarint time (Unix ms)
//	uvarint len(key), key
//	uvarint len(value), value
//
// tidwall/wal stores entries without a checksum and reads a zero-filled tail as
// empty entries, so the frame carries its own version and CRC, and is never
// empty: a zero-length or zeroed entry always fails to decode.
const (
	recordVersion  = 1
	flagDeadLetter = 1 << 0
	knownFlags     = flagDeadLetter
	headerSize     = 6
	minFrameSize   = headerSize + 16 + 3
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadRecord is wrapped by every decoding failure, so callers can tell
// damage apart from I/O errors.
var ErrBadRecord = errors.New("bad record")

// AppendRecord appends the encoded frame of r to dst and returns the extended slice.
func AppendRecord(dst []byte, r *Record) []byte {
	start := len(dst)
	var flags byte
	if r.DeadLetter {
		flags |= flagDeadLetter
	}
	dst = append(dst, recordVersion, flags, 0, 0, 0, 0)
	dst = append(dst, r.ID[:]...)
	dst = binary.AppendUvarint(dst, uint64(r.TimeMs))
	dst = binary.AppendUvarint(dst, uint64(len(r.Key)))
	dst = append(dst, r.Key...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Value)))
	dst = append(dst, r.Value...)
	frame := dst[start:]
	binary.LittleEndian.PutUint32(frame[2:6], frameCRC(frame))
	return dst
}

// EncodedSize is the exact length AppendRecord adds for r.
func EncodedSize(r *Record) int {
	return headerSize + 16 + uvarintLen(uint64(r.TimeMs)) +
		uvarintLen(uint64(len(r.Key))) + len(r.Key) +
		uvarintLen(uint64(len(r.Value))) + len(r.Value)
}

// DecodeRecord parses one frame into r. Key and Value alias frame, so the
// caller must not modify frame while r is in use. It rejects unknown versions
// and flags, checksum mismatches, truncated fields and leftover bytes.
func DecodeRecord(frame []byte, r *Record) error {
	if len(frame) < minFrameSize {
		return fmt.Errorf("%w: %d bytes is shorter than the minimum %d", ErrBadRecord, len(frame), minFrameSize)
	}
	if frame[0] != recordVersion {
		return fmt.Errorf("%w: unknown version %d", ErrBadRecord, frame[0])
	}
	if frame[1]&^knownFlags != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrBadRecord, frame[1])
	}
	if got, want := frameCRC(frame), binary.LittleEndian.Uint32(frame[2:6]); got != want {
		return fmt.Errorf("%w: crc %08x, stored %08x", ErrBadRecord, got, want)
	}
	r.DeadLetter = frame[1]&flagDeadLetter != 0
	copy(r.ID[:], frame[headerSize:headerSize+16])
	rest := frame[headerSize+16:]
	t, rest, err := takeUvarint(rest, "time")
	if err != nil {
		return err
	}
	if t > 1<<62 {
		return fmt.Errorf("%w: time %d out of range", ErrBadRecord, t)
	}
	r.TimeMs = int64(t)
	if r.Key, rest, err = takeBytes(rest, "key"); err != nil {
		return err
	}
	if r.Value, rest, err = takeBytes(rest, "value"); err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d leftover bytes", ErrBadRecord, len(rest))
	}
	return nil
}

func frameCRC(frame []byte) uint32 {
	c := crc32.Update(0, castagnoli, frame[:2])
	return crc32.Update(c, castagnoli, frame[headerSize:])
}

func takeUvarint(b []byte, field string) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, fmt.Errorf("%w: truncated %s", ErrBadRecord, field)
	}
	if n != uvarintLen(v) {
		// AppendRecord writes the shortest form; a longer one (0x80 0x00 for
		// 0) would decode to a record that does not encode back to this frame.
		return 0, nil, fmt.Errorf("%w: %s encoded in %d bytes, not its shortest form", ErrBadRecord, field, n)
	}
	return v, b[n:], nil
}

func takeBytes(b []byte, field string) ([]byte, []byte, error) {
	n, rest, err := takeUvarint(b, field+" length")
	if err != nil {
		return nil, nil, err
	}
	if n > uint64(len(rest)) {
		return nil, nil, fmt.Errorf("%w: %s length %d exceeds the %d bytes left", ErrBadRecord, field, n, len(rest))
	}
	return rest[:n:n], rest[n:], nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
