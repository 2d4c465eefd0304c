package providertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/paystatus/orderstatus/internal/providers"
)

// RecordByEncodingJSON is providers.Record as encoding/json alone reads a record carried as
// text: the reference the one-pass reader's differential tests hold it to.
func RecordByEncodingJSON(raw []byte) (providers.Fields, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err == io.EOF {
		return nil, errors.New("missing")
	} else if err != nil {
		return nil, fmt.Errorf("not an object: %v", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("not an object: more text after it")
	}
	return providers.RecordOf(v)
}
