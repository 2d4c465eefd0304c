package events

import "testing"

var benchRequest = []byte(`{"app_id":"ks707065143182458884","order_no":"1711619867139contractDemo","request_id":"r-1","attributes":{"tenant":"t1"}}`)

func benchEvent() StatusEvent {
	return StatusEvent{
		EventID:   EventID("kuaishou", "payment", "ks707065143182458884", "1711619867139contractDemo", 2),
		RequestID: "r-1", Provider: "kuaishou", Kind: "payment", AppID: "ks707065143182458884", OrderNo: "1711619867139contractDemo",
		ProviderOrderNo: "121112500031787702250", Status: StatusSucceeded, PreviousStatus: StatusPending, ProviderStatus: "SUCCESS",
		Terminal: true, Amount: 1200, Currency: "CNY", PaidAt: "2024-04-10T12:46:42.906Z", Channel: ChannelWechat,
		Details:    map[string]any{"open_id": "5b748c61ef280130c0656638ebd4eaa6", "promotion_amount": int64(1), "extra_info": map[string]any{"item_type": "VIDEO"}},
		ObservedAt: "2026-11-24T00:00:00Z", Attributes: map[string]string{"tenant": "t1"},
	}
}

func BenchmarkDecodeRequestJSON(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequest("", benchRequest); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRequestMsgpack(b *testing.B) {
	data := mustMsgpack(b, map[string]any{"app_id": "ks707065143182458884", "order_no": "1711619867139contractDemo", "request_id": "r-1", "attributes": map[string]string{"tenant": "t1"}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRequest("", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalEvent(b *testing.B) {
	ev := benchEvent()
	for _, enc := range []Encoding{Msgpack, JSON} {
		b.Run(string(enc), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := enc.Marshal(&ev); err != nil { // as the store publishes it
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEventID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		EventID("kuaishou", "payment", "ks707065143182458884", "1711619867139contractDemo", 2)
	}
}
