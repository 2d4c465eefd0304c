package providers

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// StringField reads a text field of a provider record. Absent and null read as "". Some
// records carry numbers where text is documented (order numbers); their digits are taken.
func StringField(fields map[string]json.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		var n json.Number
		if nerr := json.Unmarshal(raw, &n); nerr == nil {
			return n.String(), nil
		}
		return "", fmt.Errorf("%s is not a string", name)
	}
	return s, nil
}

// IntField reads a whole number (an amount in fen, a millisecond time): a JSON number or a
// string of digits. A fraction, or anything past int64, is refused: an amount is never
// rounded. Absent, null and "" read as 0.
func IntField(fields map[string]json.RawMessage, name string) (int64, error) {
	raw, ok := fields[name]
	if !ok || string(raw) == "null" {
		return 0, nil
	}
	text := string(raw)
	if len(raw) > 0 && raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return 0, fmt.Errorf("%s is not a number", name)
		}
		if text == "" {
			return 0, nil
		}
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return n, nil
	}
	// 1200.0 is 1200; 12.5 is not a whole number of fen.
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("%s is not a whole number: %.32s", name, text)
	}
	return int64(f), nil
}
