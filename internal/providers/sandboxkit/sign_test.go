package sandboxkit

import "testing"

// Vectors computed apart from this code (the contract's, CONTRACT.md section 6; md5sum of the
// written-out string for the others: "s" and "a=1&a-b=3&b=2s").
func TestSortedFieldsMD5(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fields   map[string]string
		secret   string
		unsigned []string
		want     string
	}{
		{"contract vector", map[string]string{"app_id": "ks707065143182458884", "out_order_no": "1711619867139contractDemo",
			"sign": "x", "access_token": "y", "empty": ""}, "9VfzaT-7Jf1bBHv-veFZfg", []string{"sign", "access_token"}, "360a9add284bb4e2050673132418a356"},
		{"nothing signed is the secret alone", map[string]string{"sign": "x"}, "s", []string{"sign"}, "03c7c0ace395d80182db07ae2c30f034"},
		{"key order is byte order", map[string]string{"b": "2", "a-b": "3", "a": "1"}, "s", nil, "787d37595d42d5f000b38ddd11714520"},
	} {
		if got := SortedFieldsMD5(tc.fields, tc.secret, tc.unsigned...); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
