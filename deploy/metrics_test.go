package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/paystatus/orderstatus/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// describing is a Registerer that keeps what it is given, so that the names of vectors no
// request has touched yet are known too.
type describing struct{ collectors []prometheus.Collector }

func (d *describing) Register(c prometheus.Collector) error {
	d.collectors = append(d.collectors, c)
	return nil
}
func (d *describing) MustRegister(cs ...prometheus.Collector) {
	d.collectors = append(d.collectors, cs...)
}
func (d *describing) Unregister(prometheus.Collector) bool { return false }

var fqNameRe = regexp.MustCompile(`fqName: "([^"]+)"`)

// serviceMetrics are the names the service's /metrics can serve: its metrics and the consumer
// collector's (histograms with their _bucket, _sum and _count series).
func serviceMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := &describing{}
	telemetry.NewMetrics(reg)
	reg.collectors = append(reg.collectors, telemetry.NewConsumerCollector(nil)) // Describe only
	names := map[string]bool{}
	for _, c := range reg.collectors {
		ch := make(chan *prometheus.Desc, 256)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			m := fqNameRe.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no name in %s", d)
			}
			names[m[1]] = true
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[m[1]+suffix] = true
			}
		}
	}
	if !names["orders_requests_total"] || !names["orders_consumer_pending"] {
		t.Fatalf("registry names look wrong: %v", names)
	}
	return names
}

var ordersMetricRe = regexp.MustCompile(`\borders_[a-z0-9_]+`)

// checkExprs fails for every orders_ name in exprs that the service does not serve, and returns
// the names used.
func checkExprs(t *testing.T, where string, exprs []string, names map[string]bool) map[string]bool {
	t.Helper()
	used := map[string]bool{}
	for _, e := range exprs {
		for _, n := range ordersMetricRe.FindAllString(e, -1) {
			used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")] = true
			if !names[n] {
				t.Errorf("%s: %q uses %s, which the service does not register", where, e, n)
			}
		}
	}
	return used
}

// Every panel of the Grafana dashboard queries metrics the service has, and the panels cover
// throughput, events, dead letters, provider latency, limiter wait, backlog and in-flight.
func TestDashboardUsesServiceMetrics(t *testing.T) {
	names := serviceMetrics(t)
	data, err := os.ReadFile(filepath.Join("grafana", "orderstatus.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, p := range dash.Panels {
		var exprs []string
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
		if len(exprs) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for n := range checkExprs(t, "panel "+p.Title, exprs, names) {
			used[n] = true
		}
	}
	for _, want := range []string{"orders_requests_total", "orders_events_published_total", "orders_dead_letters_total",
		"orders_provider_call_duration_seconds", "orders_limiter_wait_seconds", "orders_consumer_pending",
		"orders_consumer_ack_pending", "orders_requests_in_flight"} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// Every alert rule's expression uses only metrics the service has (besides kube-state-metrics'
// and Prometheus' own for readiness).
func TestAlertRulesUseServiceMetrics(t *testing.T) {
	names := serviceMetrics(t)
	data, err := os.ReadFile(filepath.Join("prometheus", "orderstatus-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			checkExprs(t, "alert "+r.Alert, []string{r.Expr}, names)
		}
	}
	for _, want := range []string{"OrderStatusDeadLettersRising", "OrderStatusBacklogGrowing", "OrderStatusLimiterWaitNearAckWait", "OrderStatusNoReadyReplica"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s", want)
		}
	}
}
