package dlq

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Letter is one dead letter's outcome.
type Letter struct {
	Seq       uint64    `json:"seq"`
	Stored    time.Time `json:"stored"`
	Subject   string    `json:"subject"`
	Reason    string    `json:"reason"` // its Orders-Error-Reason
	Target    string    `json:"target,omitempty"`
	Bytes     int       `json:"bytes"`
	Result    string    `json:"result"`
	Skip      string    `json:"skip,omitempty"` // why it was skipped: a Skip* code
	Detail    string    `json:"detail,omitempty"`
	StreamSeq uint64    `json:"stream_seq,omitempty"` // of the replay in ORDERS_QUERY
}

// Summary is what a replay did, letter by letter and in totals.
type Summary struct {
	DryRun     bool           `json:"dry_run,omitempty"`
	Selected   int            `json:"selected"`
	Replayed   int            `json:"replayed"`   // stored in ORDERS_QUERY, duplicates included
	Duplicates int            `json:"duplicates"` // of Replayed, stored by an earlier run
	Skipped    map[string]int `json:"skipped"`    // by code
	Gone       int            `json:"gone"`
	Stopped    string         `json:"stopped,omitempty"` // why the run ended before every letter's turn
	Letters    []Letter       `json:"letters"`
}

// SkippedTotal is how many letters were skipped, whatever the reason.
func (s *Summary) SkippedTotal() int {
	n := 0
	for _, c := range s.Skipped {
		n += c
	}
	return n
}

// String is the summary's one line.
func (s *Summary) String() string {
	var b strings.Builder
	if s.DryRun {
		fmt.Fprintf(&b, "%d dead letters would be replayed, %d would be skipped", s.Replayed, s.SkippedTotal())
	} else {
		fmt.Fprintf(&b, "%d dead letters replayed (%d were already queued), %d skipped", s.Replayed, s.Duplicates, s.SkippedTotal())
	}
	if len(s.Skipped) > 0 {
		codes := make([]string, 0, len(s.Skipped))
		for c := range s.Skipped {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		for i, c := range codes {
			codes[i] = fmt.Sprintf("%s %d", c, s.Skipped[c])
		}
		b.WriteString(" (" + strings.Join(codes, ", ") + ")")
	}
	if s.DryRun {
		b.WriteString(" (dry run: nothing changed)")
	} else {
		fmt.Fprintf(&b, ", %d gone before their turn", s.Gone)
	}
	if s.Stopped != "" {
		fmt.Fprintf(&b, "; stopped: %s, %d not tried", s.Stopped, s.Selected-len(s.Letters))
	}
	return b.String()
}

func (s *Summary) add(l Letter) {
	s.Letters = append(s.Letters, l)
	switch l.Result {
	case ResultReplayed, ResultWouldReplay:
		s.Replayed++
	case ResultDuplicate:
		s.Replayed++
		s.Duplicates++
	case ResultSkipped:
		if s.Skipped == nil {
			s.Skipped = map[string]int{}
		}
		s.Skipped[l.Skip]++
	case ResultGone:
		s.Gone++
	}
}
