package handlers_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
	"github.com/paystatus/orderstatus/schemas"
)

func compileSchema(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	data, err := schemas.FS.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource(file, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(file)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// asJSONValue turns any decoded value into what the schema library validates (JSON's types).
func asJSONValue(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Real events, in both encodings, real dead letters and the requests that caused them are
// valid against the published schemas; and the schemas are not vacuous.
func TestOutputMatchesSchemas(t *testing.T) {
	eventSchema := compileSchema(t, schemas.Event)
	requestSchema := compileSchema(t, schemas.Request)
	dlqSchema := compileSchema(t, schemas.DeadLetter)

	requests := []string{
		`{"app_id":"` + demoApp + `","order_no":"` + demoOrder + `","attributes":{"k":"v"},"follow_until":"` + time.Now().Add(72*time.Hour).UTC().Format(time.RFC3339) + `"}`, // at most 30 days ahead
		`{"app_id":"` + demoApp + `","order_no":"1637808229728demo","request_id":"r"}`,
		`{"app_id":"kd100020200220","provider_order_no":"600230547601422049","refresh":true}`,
	}
	for _, encoding := range []string{"json", "msgpack"} {
		t.Run(encoding, func(t *testing.T) {
			e := newEnv(t, func(c *config.Config) { c.Events.Encoding = encoding; c.Events.IncludePII = true })
			e.startReplica(nil)
			subjects := []string{"orders.query.kuaishou.payment", "orders.query.kuaishou.payment", "orders.query.kudian.payment"}
			for i, r := range requests {
				body := []byte(r)
				if encoding == "msgpack" { // requests in msgpack too
					var v map[string]any
					json.Unmarshal(body, &v)
					body, _ = msgpack.Marshal(v)
				}
				e.publish(subjects[i], body, nil)
			}
			e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`"}`), nil)
			e.publish("orders.query.nope.payment", []byte(`garbage`), nil)
			// A verified notification (an event with source callback) and a forged one (a
			// dead letter on orders.dlq.kuaishou.callback).
			paid := notice("m-schema", demoApp, "cb-schema-0001", "SUCCESS", 1200, time.Now())
			e.publishNotice(paid, kwaisign(paid, kssandbox.DemoAppSecret))
			e.publishNotice(paid, kwaisign(paid, "a-guessed-secret"))
			e.waitEvents(len(requests) + 1)
			e.waitCallbacksIdle()
			e.waitIdle()
			sources := map[string]int{}
			for _, m := range e.streamMsgs(natsinfra.StatusStream) {
				v, err := events.DecodeAny(m.Header.Get("Content-Type"), m.Data)
				if err != nil {
					t.Fatal(err)
				}
				jv := asJSONValue(t, v)
				if err := eventSchema.Validate(jv); err != nil {
					t.Errorf("event %s does not match the schema: %v", m.Data, err)
				}
				if ev, ok := jv.(map[string]any); ok {
					source, _ := ev["source"].(string)
					sources[source]++
				}
			}
			if sources[events.SourceQuery] != len(requests) || sources[events.SourceCallback] != 1 {
				t.Errorf("events by source %v, want %d query and 1 callback", sources, len(requests))
			}
			dlq := e.streamMsgs(natsinfra.DLQStream)
			if len(dlq) != 3 {
				t.Fatalf("%d dead letters", len(dlq))
			}
			for _, m := range dlq {
				hdr := map[string]any{}
				for k := range m.Header {
					hdr[k] = m.Header.Get(k)
				}
				letter := map[string]any{"subject": m.Subject, "headers": hdr, "payload": base64.StdEncoding.EncodeToString(m.Data)}
				if err := dlqSchema.Validate(asJSONValue(t, letter)); err != nil {
					t.Errorf("dead letter does not match the schema: %v", err)
				}
			}
		})
	}
	for _, r := range requests {
		if err := requestSchema.Validate(asJSONValue(t, json.RawMessage(r))); err != nil {
			t.Errorf("request %s: %v", r, err)
		}
	}
	// Not vacuous: what the consumer refuses, the schemas refuse too.
	for _, bad := range []string{`{"order_no":"x"}`, `{"app_id":"a"}`, `{"app_id":1,"order_no":"x"}`, `{"app_id":"a","order_no":"x","attributes":{"n":1}}`} {
		if requestSchema.Validate(asJSONValue(t, json.RawMessage(bad))) == nil {
			t.Errorf("request schema accepts %s", bad)
		}
	}
	good := `{"event_id":"0123456789abcdef0123456789abcdef","request_id":"r","provider":"kuaishou","kind":"payment","app_id":"a","order_no":"o","provider_order_no":"p","provider_ref_no":"","status":"succeeded","previous_status":"","provider_status":"SUCCESS","terminal":true,"amount":1,"currency":"CNY","channel":"wechat","details":{},"observed_at":"2026-01-01T00:00:00Z","attributes":{},"source":"query"}`
	if err := eventSchema.Validate(asJSONValue(t, json.RawMessage(good))); err != nil {
		t.Fatalf("hand-written good event: %v", err)
	}
	for _, bad := range []string{
		strings.Replace(good, `"terminal":true`, `"terminal":false`, 1),
		strings.Replace(good, `"amount":1`, `"amount":1.5`, 1),
		strings.Replace(good, `"source":"query"`, `"source":"webhook"`, 1),
		strings.Replace(good, `,"source":"query"`, ``, 1),
		strings.Replace(good, `"status":"succeeded"`, `"status":"done"`, 1),
		strings.Replace(good, `"observed_at":"2026-01-01T00:00:00Z"`, `"observed_at":"yesterday"`, 1),
	} {
		if eventSchema.Validate(asJSONValue(t, json.RawMessage(bad))) == nil {
			t.Errorf("event schema accepts %s", bad)
		}
	}
}
