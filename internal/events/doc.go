// Package events holds the public payloads of the order-status consumer: the query request it
// reads, the status-changed event and the dead letter it writes, their codecs (JSON and msgpack),
// the subjects they travel on and the deterministic event id.
//
// Everything here mirrors CONTRACT.md sections 1 to 4; nothing provider-specific lives here.
package events
