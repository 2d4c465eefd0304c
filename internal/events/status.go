package events

// Status is the normalized status of an order, payment, settlement or refund.
type Status string

// The normalized statuses of CONTRACT.md section 3.
const (
	StatusPending   Status = "pending"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusTimedOut  Status = "timed_out"
	StatusCancelled Status = "cancelled"
	StatusReversed  Status = "reversed"
	StatusUnknown   Status = "unknown"
)

// Statuses lists every normalized status, in the contract's order.
var Statuses = []Status{
	StatusPending, StatusSucceeded, StatusFailed, StatusTimedOut,
	StatusCancelled, StatusReversed, StatusUnknown,
}

// Terminal reports whether an order in this status never changes again.
func (s Status) Terminal() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusTimedOut, StatusCancelled, StatusReversed:
		return true
	}
	return false
}

// Channel is the normalized payment channel.
type Channel string

// The normalized channels of CONTRACT.md section 3.
const (
	ChannelWechat   Channel = "wechat"
	ChannelAlipay   Channel = "alipay"
	ChannelApplePay Channel = "apple_pay"
	ChannelBalance  Channel = "balance"
	ChannelUnknown  Channel = "unknown"
)

// Kinds of query. Kudian supports only KindPayment.
const (
	KindPayment    = "payment"
	KindSettlement = "settlement"
	KindRefund     = "refund"
)
