package vault

import (
	"errors"
	"fmt"
)

// secretRecord is the clear content of a card's sealed record. It exists
// only inside the narrow paths, which clear it before returning.
type secretRecord struct {
	PAN         []byte
	CVV         []byte
	ExpiryMonth int
	ExpiryYear  int
	Name        []byte
	// buf is the opened record the fields alias, when decoded.
	buf []byte
}

const recordFormatV1 = 0x01

// encode lays the record out as format byte, then PAN, CVV, "MMYYYY" and
// name, each with a one-byte length. The caller clears the result.
func (r *secretRecord) encode() ([]byte, error) {
	exp := []byte(fmt.Sprintf("%02d%04d", r.ExpiryMonth, r.ExpiryYear))
	fields := [][]byte{r.PAN, r.CVV, exp, r.Name}
	n := 1
	for _, f := range fields {
		if len(f) > 255 {
			return nil, errors.New("record field too long")
		}
		n += 1 + len(f)
	}
	out := make([]byte, 0, n)
	out = append(out, recordFormatV1)
	for _, f := range fields {
		out = append(out, byte(len(f)))
		out = append(out, f...)
	}
	return out, nil
}

// decodeRecord parses an opened record. The fields alias b, which the
// record's clear wipes whole.
func decodeRecord(b []byte) (*secretRecord, error) {
	if len(b) == 0 || b[0] != recordFormatV1 {
		return nil, errors.New("unknown record format")
	}
	rest := b[1:]
	var fields [4][]byte
	for i := range fields {
		if len(rest) == 0 || int(rest[0]) > len(rest)-1 {
			return nil, errors.New("truncated record")
		}
		l := int(rest[0])
		fields[i] = rest[1 : 1+l : 1+l]
		rest = rest[1+l:]
	}
	if len(rest) != 0 || len(fields[2]) != 6 || !allDigits(fields[2]) {
		return nil, errors.New("malformed record")
	}
	exp := fields[2]
	return &secretRecord{
		PAN:         fields[0],
		CVV:         fields[1],
		ExpiryMonth: int(exp[0]-'0')*10 + int(exp[1]-'0'),
		ExpiryYear:  int(exp[2]-'0')*1000 + int(exp[3]-'0')*100 + int(exp[4]-'0')*10 + int(exp[5]-'0'),
		Name:        fields[3],
		buf:         b,
	}, nil
}

// clear wipes the record's buffers.
func (r *secretRecord) clear() {
	clear(r.PAN)
	clear(r.CVV)
	clear(r.Name)
	clear(r.buf)
}
