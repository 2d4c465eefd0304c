package handlers_test

import (
	"testing"

	"github.com/paystatus/orderstatus/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Per new status a worker waits for one JetStream answer, the claim's: the event and the clear
// of its mark are not waited for, and the limiter's reservations are spread over many calls.
func TestOneRoundTripWaitedPerNewStatus(t *testing.T) {
	const n = 40
	e := newEnv(t, nil)
	e.metrics = telemetry.NewMetrics(prometheus.NewRegistry())
	nos := putOrders(e.sb, "trips", n)
	e.startReplica(nil)
	for _, no := range nos {
		e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+no+`"}`), nil)
	}
	e.waitEvents(n)
	e.waitIdle()
	trips := map[string]float64{}
	var total float64
	for _, op := range []string{"claim", "state_read", "event", "clear", "limiter"} {
		trips[op] = testutil.ToFloat64(e.metrics.RoundTrips.WithLabelValues(op))
		total += trips[op]
	}
	t.Logf("figures: new statuses=%d round trips waited=%.0f (%v)", n, total, trips)
	if trips["claim"] != n || trips["state_read"]+trips["event"]+trips["clear"] != 0 || total > n+n/4 {
		t.Fatalf("round trips waited for %d new statuses: %v", n, trips)
	}
}
