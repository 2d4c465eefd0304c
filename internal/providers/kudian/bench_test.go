package kudian

import (
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/providers"
)

func BenchmarkSign(b *testing.B) {
	fields := map[string]string{"open_app_id": "kd100020200220", "timestamp": "1602558156", "sign_type": "MD5",
		"token": "UT89A6C01D2A704608808F4896369FE009", "biz_content": `{"pay_no":"600230547601422048","is_fresh":false}`}
	b.ReportAllocs()
	for b.Loop() {
		Sign(fields, secret)
	}
}

// BenchmarkParseAnswer is the verification and normalization of the documents' answer.
func BenchmarkParseAnswer(b *testing.B) {
	c := client(b, false)
	body := signed(docResult)
	q := providers.Query{Kind: events.KindPayment, ProviderOrderNo: "600230547601422048"}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.parseAnswer(q, secret, body, now); err != nil {
			b.Fatal(err)
		}
	}
}
