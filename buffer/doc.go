// Package buffer is Sluice's persistent write-ahead buffer: the only place an
// accepted beacon lives between the HTTP response and Kafka's acknowledgement.
//
// Contract:
//   - Append hands records to one writer goroutine, which assigns WAL indices and
//     writes many requests with one WriteBatch and one fsync (group commit). The
//     done callback runs only after that fsync, so a 2xx sent from it means the
//     event survives a crash.
//   - The Shipper is the only reader. It reads from the acknowledged index, hands
//     records to a Sink, and advances the acknowledged index only over a
//     contiguous prefix of records the Sink confirmed. Failed records are re-read
//     from the WAL and sent again, so delivery is at least once.
//   - The acknowledged index is persisted atomically, at most once per
//     checkpoint interval and at shutdown; the WAL front is truncated only up to
//     a persisted index. After a crash, duplicates are bounded by one interval.
//   - One process per directory: Open takes an exclusive flock on it.
//
// Lock order: Buffer.mu (reopen) is never held while calling into the Sink;
// Shipper.mu only guards the completion list filled by Sink callbacks.
package buffer
