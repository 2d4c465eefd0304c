package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/paystatus/orderstatus/internal/events"
)

// runDecode reads one message body (a msgpack or JSON event, request or dead letter) on stdin
// and writes it as indented JSON, for `nats sub ... --translate 'consumer decode'`.
func runDecode(stdin io.Reader, stdout io.Writer) error {
	data, err := io.ReadAll(io.LimitReader(stdin, 8<<20))
	if err != nil {
		return err
	}
	v, err := events.DecodeAny("", data)
	if trimmed, ok := bytes.CutSuffix(data, []byte("\n")); err != nil && ok {
		// `nats consumer next --raw` and `nats kv get --raw` end the body with a newline.
		if w, werr := events.DecodeAny("", trimmed); werr == nil {
			v, err = w, nil
		}
	}
	if err != nil {
		// Not a payload of ours: show it as it is rather than hide it.
		_, werr := stdout.Write(data)
		if werr != nil {
			return werr
		}
		return fmt.Errorf("decode: %v", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(jsonable(v))
}

// jsonable turns msgpack's generic values (maps with any keys, binary) into ones JSON can hold.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = jsonable(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = jsonable(e)
		}
		return t
	case []byte:
		return string(t)
	}
	return v
}
