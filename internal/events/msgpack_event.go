package events

import "github.com/vmihailenco/msgpack/v5"

// encodeMsgpack writes ev with enc (as reset: no options) byte for byte as enc.Encode(ev) does,
// a map of the fields named by their tags in their order, paid_at left out when empty, without
// the reflection: a test compares the two.
func encodeMsgpack(enc *msgpack.Encoder, ev *StatusEvent) error {
	n := 20
	if ev.PaidAt == "" {
		n--
	}
	w := msgpackWriter{enc: enc}
	w.err = enc.EncodeMapLen(n)
	w.str("event_id", ev.EventID)
	w.str("request_id", ev.RequestID)
	w.str("provider", ev.Provider)
	w.str("kind", ev.Kind)
	w.str("app_id", ev.AppID)
	w.str("order_no", ev.OrderNo)
	w.str("provider_order_no", ev.ProviderOrderNo)
	w.str("provider_ref_no", ev.ProviderRefNo)
	w.str("status", string(ev.Status))
	w.str("previous_status", string(ev.PreviousStatus))
	w.str("provider_status", ev.ProviderStatus)
	if w.key("terminal") {
		w.err = enc.EncodeBool(ev.Terminal)
	}
	if w.key("amount") {
		w.err = enc.EncodeInt64(ev.Amount) // an int64 field is 9 bytes unless compact ints are asked for
	}
	w.str("currency", ev.Currency)
	if ev.PaidAt != "" {
		w.str("paid_at", ev.PaidAt)
	}
	w.str("channel", string(ev.Channel))
	if w.key("details") {
		w.err = enc.EncodeMap(ev.Details) // nil as nil
	}
	w.str("observed_at", ev.ObservedAt)
	if w.key("attributes") {
		w.strings(ev.Attributes)
	}
	w.str("source", ev.Source)
	return w.err
}

// msgpackWriter writes map entries until the first error, which it keeps.
type msgpackWriter struct {
	enc *msgpack.Encoder
	err error
}

// key writes k, and reports whether its value is to be written.
func (w *msgpackWriter) key(k string) bool {
	if w.err == nil {
		w.err = w.enc.EncodeString(k)
	}
	return w.err == nil
}

func (w *msgpackWriter) str(k, v string) {
	if w.key(k) {
		w.err = w.enc.EncodeString(v)
	}
}

func (w *msgpackWriter) strings(m map[string]string) {
	if m == nil {
		w.err = w.enc.EncodeNil()
		return
	}
	w.err = w.enc.EncodeMapLen(len(m))
	for k, v := range m {
		w.str(k, v)
	}
}
