package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paystatus/orderstatus/internal/buildinfo"
)

// BuildInfoCollector is the gauge orders_build_info{version,revision} = 1, so a dashboard
// can tell which build each replica runs.
func BuildInfoCollector() prometheus.Collector {
	info := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "orders_build_info",
		Help:        "The running build: version and VCS revision (value 1).",
		ConstLabels: prometheus.Labels{"version": info.Version, "revision": info.Revision},
	})
	g.Set(1)
	return g
}
