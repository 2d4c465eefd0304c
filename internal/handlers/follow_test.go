package handlers_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/paystatus/orderstatus/internal/config"
	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/natsinfra"
	"github.com/paystatus/orderstatus/internal/natstest"
	kssandbox "github.com/paystatus/orderstatus/internal/providers/kuaishou/sandbox"
)

func fastFollow(c *config.Config) {
	c.Consumer.FollowDelay = time.Second
	c.Consumer.FollowMaxDelay = 2 * time.Second
}

// A follow request re-queries until the status is terminal, with each change an event, and
// its schedule lives in JetStream: it survives the consumer being stopped and started again.
func TestFollowUntilTerminalSurvivesRestart(t *testing.T) {
	e := newEnv(t, fastFollow)
	stop := e.startReplica(nil)
	e.sb.PutOrder(kssandbox.Order{AppID: demoApp, Kind: events.KindPayment, OrderNo: "follow-001",
		Steps:  []kssandbox.Step{{Status: "PROCESSING"}, {After: 4 * time.Second, Status: "SUCCESS"}},
		Amount: 500, KsOrderNo: "ks-follow-001", PayChannel: "WECHAT"})
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"follow-001","follow":true,"request_id":"r-follow"}`), nil)
	first := e.waitEvents(1)[0]
	if first.Status != events.StatusPending {
		t.Fatalf("first event %+v", first)
	}
	stop() // the follow-up waits in the stream while no consumer runs
	time.Sleep(1500 * time.Millisecond)
	e.startReplica(nil)
	evs := e.waitEvents(2)
	if evs[1].Status != events.StatusSucceeded || evs[1].PreviousStatus != events.StatusPending || evs[1].RequestID != "r-follow" {
		t.Fatalf("second event %+v", evs[1])
	}
	// Terminal: nothing more is scheduled, and the work queue empties.
	natstest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if n := len(e.queued()); n != 0 {
			return fmt.Errorf("%d messages left in %s", n, natsinfra.QueryStream)
		}
		return nil
	})
	e.waitIdle()
	if n := len(e.events()); n != 2 {
		t.Fatalf("%d events", n)
	}
}

// A follow request stops at follow_until even when the order never ends.
func TestFollowStopsAtFollowUntil(t *testing.T) {
	e := newEnv(t, fastFollow)
	e.startReplica(nil)
	until := time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339)
	e.publish("orders.query.kuaishou.payment", []byte(`{"app_id":"`+demoApp+`","order_no":"`+demoOrder+`","follow":true,"follow_until":"`+until+`"}`), nil)
	e.waitEvents(1)
	calls := func() int { return len(e.sb.Calls(demoApp, events.KindPayment)) }
	natstest.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if calls() < 2 {
			return fmt.Errorf("%d queries: the follow-up never came", calls())
		}
		if n := len(e.queued()); n != 0 {
			return fmt.Errorf("%d messages left in %s", n, natsinfra.QueryStream)
		}
		return nil
	})
	e.waitIdle()
	before := calls()
	time.Sleep(2500 * time.Millisecond) // longer than the longest follow wait
	if after := calls(); after != before {
		t.Fatalf("queries went on after follow_until: %d -> %d", before, after)
	}
	if n := len(e.queued()); n != 0 {
		t.Fatalf("%d follow-ups left", n)
	}
}
