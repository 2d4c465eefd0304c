package telemetry

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// The messaging attributes of the service's NATS spans, as the OpenTelemetry semantic
// conventions for messaging (v1.43) name them. A span that receives and handles a message is
// a consumer span of operation type "process"; one that publishes a message is a producer span
// of type "send". A span is named "{messaging.operation.name} {stream}": the stream, not the
// subject, keeps the names few.
var (
	// MessagingNATS is messaging.system: NATS has no value of its own in the conventions' list.
	MessagingNATS = semconv.MessagingSystemKey.String("nats")
	// OperationProcess and OperationPublish are messaging.operation.type and .name of a
	// consumer and a producer span.
	OperationProcess = []attribute.KeyValue{semconv.MessagingOperationTypeProcess, semconv.MessagingOperationName("process")}
	OperationPublish = []attribute.KeyValue{semconv.MessagingOperationTypeSend, semconv.MessagingOperationName("publish")}
)

// ErrorType is error.type of a failure with no class of its own: "timeout" or "canceled"
// when a wait ran out or was called off, else "_OTHER", as the conventions ask of an
// unknown one.
func ErrorType(err error) attribute.KeyValue {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		return semconv.ErrorTypeKey.String("timeout")
	case errors.Is(err, context.Canceled):
		return semconv.ErrorTypeKey.String("canceled")
	}
	return semconv.ErrorTypeOther
}
