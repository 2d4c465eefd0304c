package providers

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/paystatus/orderstatus/internal/events"
)

func TestRecord(t *testing.T) {
	for raw, ok := range map[string]bool{`{"a":1}`: true, ` {} `: true, ``: false, `null`: false, `[1]`: false, `"{}"`: false, `{`: false} {
		fields, err := Record(json.RawMessage(raw), nil)
		if (err == nil) != ok || ok && fields == nil {
			t.Errorf("%q: %v %v", raw, fields, err)
		}
	}
}

func TestDetails(t *testing.T) {
	fields, err := Record([]byte(`{"status":"X","fee":9007199254740993,"rate":0.5,"info":{"n":[1,"a"]},"phone":"1"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := fields.Details("status", "phone")
	want := map[string]any{"fee": int64(9007199254740993), "rate": 0.5, "info": map[string]any{"n": []any{int64(1), "a"}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%#v", got)
	}
	if got := Fields(nil).Details(); got == nil {
		t.Fatalf("no fields: %#v", got)
	}
	if _, err := Record([]byte(`{"bad":{`), nil); err == nil {
		t.Fatal("a field that does not decode was taken")
	}
}

func TestNormalize(t *testing.T) {
	statuses := Statuses{"OK": events.StatusSucceeded}
	channels := Channels{"WX": events.ChannelWechat}
	for _, tc := range []struct {
		got, want any
	}{
		{statuses.Normalize("OK"), events.StatusSucceeded},
		{statuses.Normalize("NEW"), events.StatusUnknown},
		{statuses.Normalize(""), events.StatusUnknown},
		{channels.Normalize("WX"), events.ChannelWechat},
		{channels.Normalize("UNIONPAY"), events.ChannelUnknown},
	} {
		if tc.got != tc.want {
			t.Errorf("got %v, want %v", tc.got, tc.want)
		}
	}
}
