package providers

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Fields is a provider's record (the object holding one order's fields), decoded in one pass
// with the answer it came in: each field under the name the provider gives it, objects and
// arrays as maps and slices, and numbers as json.Number, their text, until the reader that
// knows the field's type takes them (String, Int) or they go to an event's details (Details).
//
// The record is decoded as a map, not into a struct, on purpose: encoding/json matches a
// struct's fields to keys in any case, and a record's fields are the provider's exact names
// (a "PAY_STATUS" is not pay_status, but a detail of its own).
type Fields map[string]any

// String reads a text field. Absent and null read as "". Some records carry numbers where text
// is documented (order numbers); their digits are taken, as the answer writes them.
func (f Fields) String(name string) (string, error) {
	switch v := f[name].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	}
	return "", fmt.Errorf("%s is not a string", name)
}

// Int reads a whole number (an amount in fen, a millisecond time): a JSON number or a string
// of digits. A fraction, or anything past int64, is refused: an amount is never rounded.
// Absent, null and "" read as 0.
func (f Fields) Int(name string) (int64, error) {
	var text string
	switch v := f[name].(type) {
	case nil:
		return 0, nil
	case string:
		text = v
	case json.Number:
		text = v.String()
	default:
		return 0, fmt.Errorf("%s is not a whole number: %s", name, kindOf(v))
	}
	if text == "" {
		return 0, nil
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return n, nil
	}
	// 1200.0 is 1200; 12.5 is not a whole number of fen.
	x, err := strconv.ParseFloat(text, 64)
	if err != nil || x != math.Trunc(x) || math.Abs(x) > 1<<53 {
		return 0, fmt.Errorf("%s is not a whole number: %.32s", name, text)
	}
	return int64(x), nil
}

// Amount reads an amount in fen, as Int reads it; a negative one is refused, as no payment,
// settlement or refund is of less than nothing.
func (f Fields) Amount(name string) (int64, error) {
	n, err := f.Int(name)
	if err == nil && n < 0 {
		return 0, fmt.Errorf("%s is negative: %d", name, n)
	}
	return n, err
}

// kindOf names the JSON kind of v, a value decoded into any, for errors.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// SameOrder is an error when field, an order number an answer gives (answered), is not the
// one the query asked for (asked): the answer is about another order. An answer or a query
// without the number says nothing.
func SameOrder(field, answered, asked string) error {
	if answered != "" && asked != "" && answered != asked {
		return fmt.Errorf("%s is %.64q, not the %.64q asked for", field, answered, asked)
	}
	return nil
}
