// Package enrich turns validated beacon events into buffer records: it owns the
// event model, the bounded intake queue (the fan-in of every connection), the
// worker pool, the enrichers (id, time, client IP, user agent, routing) and
// dead-letter routing of events that parse but fail validation.
//
// A request's events travel as one Batch: they stay together and in order,
// are enriched by one worker, and are appended to the buffer in one call, so
// they land in the WAL contiguously.
package enrich
