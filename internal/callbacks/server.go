// Package callbacks is the HTTP way in of provider notifications (CONTRACT.md section 8): an
// internet-facing endpoint on its own listener (callbacks.listen), apart from the probes and
// metrics. It verifies a notification and stores it in JetStream, byte for byte, before it
// answers; the pipeline (internal/handlers) processes it from there, as it does one a gateway
// published on NATS. Nothing but POST /callbacks/<provider> is served, with bounded bodies,
// headers, times and concurrency.
package callbacks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paystatus/orderstatus/internal/events"
	"github.com/paystatus/orderstatus/internal/handlers"
	"github.com/paystatus/orderstatus/internal/providers"
	"github.com/paystatus/orderstatus/internal/telemetry"
)

// MaxBody bounds a notification body; a longer one is answered 413 unread.
const MaxBody = 64 << 10

// Limits of the listener, against slow and greedy clients. The zero value of Options takes
// these.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 8 << 10
	// DefaultStoreTimeout bounds the wait for JetStream to store a notification: past it the
	// answer is 503 and the provider sends it again.
	DefaultStoreTimeout = 5 * time.Second
)

// Options configure the endpoint.
type Options struct {
	JS       jetstream.JetStream
	Subjects events.Subjects
	// Notifiers verify notifications, by provider name (the path's last segment).
	Notifiers map[string]providers.Notifier
	// MaxConcurrent bounds the notifications verified and stored at once; one more is
	// answered 503. A body still arriving holds no place (ReadTimeout bounds it).
	MaxConcurrent int
	Log           *slog.Logger
	Metrics       *telemetry.Metrics

	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout, StoreTimeout time.Duration
	MaxHeaderBytes                                                          int
}

// Handler serves POST /callbacks/<provider> for o.Notifiers, and nothing else.
func Handler(o Options) http.Handler {
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = DefaultStoreTimeout
	}
	return &handler{o: o, slots: make(chan struct{}, max(o.MaxConcurrent, 1))}
}

type handler struct {
	o     Options
	slots chan struct{}
}

func (h *handler) count(provider, outcome string) {
	h.o.Metrics.Notifications.WithLabelValues(provider, "http", outcome).Inc()
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/callbacks/")
	notifier := h.o.Notifiers[name]
	if !ok || notifier == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength > MaxBody {
		h.count(name, handlers.NotifyMalformed)
		http.Error(w, "body over 64 KiB", http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		h.count(name, handlers.NotifyMalformed)
		http.Error(w, "body over 64 KiB", http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		http.Error(w, "body not read", http.StatusBadRequest)
		return
	}
	// The places bound verifying and storing, not reading: a body trickling in (anyone may send
	// one, before a signature is checked) waits on its own read time limit, holding none.
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		h.count(name, "busy")
		w.Header().Set("Retry-After", "1")
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	sign := r.Header.Get("kwaisign")
	n, err := notifier.Notification(body, sign)
	switch {
	case errors.Is(err, providers.ErrBadSignature):
		// Refused before anything is stored: a forged body costs no storage. The log names
		// the app (in err) only; the signature given and the secret stay out of it.
		h.count(name, handlers.NotifyBadSignature)
		h.o.Log.Warn("notification refused: signature does not verify", "provider", name, "remote", r.RemoteAddr, "err", err)
		http.Error(w, "signature does not verify", http.StatusUnauthorized)
		return
	case err != nil:
		h.count(name, handlers.NotifyMalformed)
		if errors.Is(err, providers.ErrUnreadable) { // the provider's own: it sends it again and again
			h.o.Log.Warn("notification signed by its app but not readable; answered 400", "provider", name, "err", err)
		}
		http.Error(w, "not a notification", http.StatusBadRequest)
		return
	}
	dup, err := h.store(r.Context(), name, body, sign, n.MessageID)
	if err != nil {
		h.count(name, "store_failed")
		h.o.Log.Error("notification not stored; answered 503, the provider sends it again", "provider", name,
			"app_id", n.AppID, "message_id", n.MessageID, "err", err)
		http.Error(w, "not stored", http.StatusServiceUnavailable)
		return
	}
	if dup {
		h.count(name, handlers.NotifyDuplicate)
	} else {
		h.count(name, "stored")
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Result    int    `json:"result"`
		MessageID string `json:"message_id"`
	}{1, n.MessageID})
}

// store publishes the notification as the NATS way in takes it (the body byte for byte, its
// signature in handlers.HeaderSignature) and waits until JetStream has it. Nats-Msg-Id is the
// message_id, so a resend inside the duplicate window is stored once: dup says the stream
// held it already.
func (h *handler) store(ctx context.Context, provider string, body []byte, sign, messageID string) (dup bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, h.o.StoreTimeout)
	defer cancel()
	m := &nats.Msg{Subject: h.o.Subjects.Callback(provider), Data: body,
		Header: nats.Header{handlers.HeaderSignature: {sign}, events.HeaderMsgID: {messageID}}}
	ack, err := h.o.JS.PublishMsg(ctx, m)
	if err != nil {
		return false, err
	}
	return ack.Duplicate, nil
}

// Start serves the endpoint on addr until ctx ends.
func Start(ctx context.Context, addr string, o Options) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("callbacks.listen %s: %w", addr, err)
	}
	def := func(d, fallback time.Duration) time.Duration {
		if d <= 0 {
			return fallback
		}
		return d
	}
	srv := &http.Server{
		Handler:           Handler(o),
		ReadHeaderTimeout: def(o.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       def(o.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      def(o.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       def(o.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
	if srv.MaxHeaderBytes <= 0 {
		srv.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.Log.Error("callback endpoint stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return ln.Addr(), nil
}

// NotifiersOf are the providers of provs that send notifications, by name.
func NotifiersOf(provs []providers.Provider) map[string]providers.Notifier {
	out := map[string]providers.Notifier{}
	for _, p := range provs {
		if n, ok := p.(providers.Notifier); ok {
			out[p.Name()] = n
		}
	}
	return out
}
