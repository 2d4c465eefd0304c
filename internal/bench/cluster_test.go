package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/natstest"
)

// cluster is phase h: throughput on a real cluster of three nats-server processes started from
// deploy/nats/cluster-*.conf, the consumer process against all three with nats.replicas: 3,
// provisioning the streams and KV buckets itself at R3, as the service does in production.
// Every request, event and KV write is replicated to two other processes, so this is the
// figure a three-node deployment gets, where a: is one embedded server's.
func (r *rig) cluster() row {
	const (
		name = "h. throughput on a three-process R3 cluster, 10,000 requests / 200 apps"
		n    = 10000
	)
	bin := natstest.NATSServerBinary()
	if bin == "" {
		return row{name, "skipped: no nats-server (make nats-server)", ""}
	}
	url := natstest.RunClusterProcesses(r.t, bin, natstest.DeployClusterConfigs(filepath.Join("..", "..", "deploy", "nats")))
	nc, err := nats.Connect(url)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)

	// The same rig (binary, sandbox) against the cluster: its publishAll, waitFor and
	// startConsumer then use the cluster's connection and URLs.
	cr := *r
	cr.nc, cr.js, cr.url, cr.replicas, cr.dir = nc, js, url, 3, r.t.TempDir()
	c := cr.startConsumer(100000) // waits until the consumer has provisioned everything
	r.t.Cleanup(c.stop)
	for _, s := range []string{"ORDERS_QUERY", "ORDERS_STATUS", "KV_ORDERS_STATE", "KV_ORDERS_RATE"} {
		st, err := js.Stream(context.Background(), s)
		if err != nil {
			r.t.Fatal(err)
		}
		if info := st.CachedInfo(); info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			r.t.Fatalf("%s: %d replicas, cluster %+v", s, info.Config.Replicas, info.Cluster)
		}
	}

	orders := r.orders("r3", n, 200)
	start := time.Now()
	cr.publishAll("orders.query.kuaishou.payment", orders)
	end := cr.waitFor("ORDERS_STATUS", n, 120*time.Second)
	c.stop()
	took := end.Sub(start).Seconds()
	return row{name, fmt.Sprintf("%.0f req/s (%.2f s)", n/took, took), ""}
}
