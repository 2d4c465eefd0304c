package providers

import (
	"errors"
	"fmt"
	"time"
)

// Notification is a provider's push notification about one order (CONTRACT.md section 8),
// read from its body and verified.
type Notification struct {
	// MessageID is the notification's id, the same on every resend.
	MessageID string
	AppID     string
	Kind      string
	// Sent is when the provider sent it: the time of the observation it is.
	Sent time.Time
	// Result is the order as the notification tells it, normalized as a query's answer is.
	Result Result
}

// Errors of a notification, told apart with errors.Is. ErrUnknownApp is an ErrBadSignature
// too: a body whose app has no secret here cannot be verified.
var (
	ErrNotNotification = errors.New("not a provider notification")
	ErrBadSignature    = errors.New("signature does not match")
	ErrUnknownApp      = fmt.Errorf("%w: unknown app_id", ErrBadSignature)
	// ErrUnreadable is an ErrNotNotification whose signature verifies: the provider did
	// send it, and it will send it again until it is taken, so it is worth an operator's look.
	ErrUnreadable = fmt.Errorf("%w, signed by its app", ErrNotNotification)
)

// Notifier is a Provider that sends signed notifications.
type Notifier interface {
	// Notification reads body and checks its signature, in constant time, against the secret
	// of the app it names. Its errors are ErrNotNotification or ErrBadSignature (ErrUnknownApp),
	// and carry no secret or computed signature. Nothing of a body it refuses is returned.
	Notification(body []byte, signature string) (Notification, error)
}
