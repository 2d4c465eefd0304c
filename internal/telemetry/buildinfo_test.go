package telemetry

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paystatus/orderstatus/internal/buildinfo"
)

func TestBuildInfoMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	reg.MustRegister(BuildInfoCollector())
	info := buildinfo.Read()
	want := `# HELP orders_build_info The running build: version and VCS revision (value 1).
# TYPE orders_build_info gauge
orders_build_info{revision="` + info.Revision + `",version="` + info.Version + `"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "orders_build_info"); err != nil {
		t.Fatal(err)
	}
}
