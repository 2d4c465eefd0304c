package kuaishou

import (
	"os"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/events"
)

// The document's own example answers (testdata, see its README) parse to the normalized
// result their fields say.
func TestDocumentExamples(t *testing.T) {
	for _, tc := range []struct {
		file, kind             string
		raw                    string
		status                 events.Status
		amount                 int64
		providerOrderNo, refNo string
		channel                events.Channel
		paidAt                 time.Time
		detail                 string
		detailValue            any
	}{
		{"query_order.json", events.KindPayment, "PROCESSING", events.StatusPending, 1200, "121112500031787702250", "",
			events.ChannelWechat, time.UnixMilli(1712753202906), "open_id", "5b748c61ef280130c0656638ebd4eaa6"},
		{"query_settle.json", events.KindSettlement, "SETTLE_PROCESSING", events.StatusPending, 234, "121120711774457276553", "321120700415719078553",
			events.ChannelUnknown, time.Time{}, "developer_promotion_amount", int64(20)},
		{"query_refund.json", events.KindRefund, "REFUND_SUCCESS", events.StatusSucceeded, 1, "122081801105480677436", "222081811172813537436",
			events.ChannelUnknown, time.Time{}, "ks_refund_fail_reason", "账户异常"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			body, err := os.ReadFile("testdata/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			r := mustParse(t, tc.kind, string(body))
			if r.ProviderStatus != tc.raw || r.Status != tc.status || r.Amount != tc.amount || r.ProviderOrderNo != tc.providerOrderNo ||
				r.ProviderRefNo != tc.refNo || r.Channel != tc.channel || !r.PaidAt.Equal(tc.paidAt) || r.Details[tc.detail] != tc.detailValue {
				t.Fatalf("%+v", r)
			}
		})
	}
}
