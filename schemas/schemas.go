// Package schemas holds the JSON Schemas (2020-12) of the service's public payloads: the query
// request, the status event and the dead letter. Tests validate real output against them.
package schemas

import "embed"

// FS holds the schema files.
//
//go:embed *.schema.json
var FS embed.FS

// Files names each schema file.
const (
	Request    = "query-request.schema.json"
	Event      = "status-event.schema.json"
	DeadLetter = "dead-letter.schema.json"
)
