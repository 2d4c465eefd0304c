package sandboxkit

import (
	"crypto/md5"
	"fmt"
	"sort"
	"strings"
)

// SortedFieldsMD5 is the request signature both sandboxes check, written here from the
// documents and apart from the clients' own: the lowercase hex MD5 of "k=v" pairs joined with
// "&", keys in byte order, fields with an empty value or named in unsigned left out, the secret
// appended directly. A sandbox checking with the client's own function would accept whatever
// the client gets wrong.
func SortedFieldsMD5(fields map[string]string, secret string, unsigned ...string) string {
	skip := make(map[string]bool, len(unsigned))
	for _, k := range unsigned {
		skip[k] = true
	}
	var keys []string
	for k, v := range fields {
		if v != "" && !skip[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + fields[k]
	}
	return fmt.Sprintf("%x", md5.Sum([]byte(strings.Join(pairs, "&")+secret)))
}
