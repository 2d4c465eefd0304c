package handlers_test

import (
	"context"
	"strings"
	"testing"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/orderstate"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
)

// An order whose record in ORDERS_STATE is damaged, deleted or purged still gets every change
// it goes through downstream: the next answer writes over the record, its event has an id the
// order never had (so JetStream does not drop it as a duplicate), and nothing of the damage
// leaks into it.
func TestDamagedRecordLosesNoEvent(t *testing.T) {
	for name, damage := range map[string]string{
		"random bytes":             "\x9c\x01\xff\x00\x7f",
		"empty":                    "",
		"empty object":             "{}",
		"negative transition":      `{"status":"pending","transition":-1,"event_id":"e"}`,
		"900 KiB array":            `{"status":"pending","transition":1,"event_id":"e","x":[` + strings.Repeat("1,", 450<<10) + `1]}`,
		"64 KiB strings":           `{"status":"pending","provider_status":"` + strings.Repeat("x", 64<<10) + `","transition":1,"event_id":"e"}`,
		"strings outside the enum": `{"status":"x y","provider_status":"x y","transition":1,"event_id":"x y","pending":{"event_id":"x y","status":"x y","previous_status":"x y","provider":"x y","kind":"x y"}}`,
		"deleted then purged":      "purge",
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.startReplica(nil)
			const no = "damaged-001"
			e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: no, Amount: 700, KsOrderNo: "ks-" + no,
				PayChannel: "WECHAT", Steps: []kssandbox.Step{{Status: "PROCESSING"}}})
			body := []byte(`{"app_id":"` + demoApp + `","order_no":"` + no + `"}`)
			e.publish("orders.query.kuaishou.payment", body, nil)
			first := e.waitEvents(1)[0]
			e.waitIdle()

			ctx := context.Background()
			kv, err := e.js.KeyValue(ctx, natsinfra.StateBucket)
			if err != nil {
				t.Fatal(err)
			}
			key := orderstate.Key("kuaishou", "payment", demoApp, no)
			if damage == "purge" {
				if err := kv.Delete(ctx, key); err != nil {
					t.Fatal(err)
				}
				err = kv.Purge(ctx, key)
			} else {
				_, err = kv.Put(ctx, key, []byte(damage))
			}
			if err != nil {
				t.Fatal(err)
			}

			e.sb.SetStatus(demoApp, events.KindPayment, no, "SUCCESS")
			e.publish("orders.query.kuaishou.payment", body, nil)
			evs := e.waitEvents(2)
			e.waitIdle()
			next := evs[1]
			if next.EventID == first.EventID {
				t.Fatalf("the change after the damage has the order's first event id %s", next.EventID)
			}
			if next.Status != events.StatusSucceeded || next.PreviousStatus != "" {
				t.Fatalf("event %s > %s, want a first observation of succeeded", next.PreviousStatus, next.Status)
			}
			if st := e.storedState(events.KindPayment, no).Status; st != string(events.StatusSucceeded) {
				t.Fatalf("ORDERS_STATE at %q, want succeeded", st)
			}
		})
	}
}
