package session

import (
	"encoding"
	"errors"
	"fmt"
	"time"
)

// The payloads of tokenhandler's cookies (and of the rotation grace entry) are encoded in a
// compact, versioned binary form: a format byte, a kind byte, then each field in a fixed
// order, strings as a uvarint length and the bytes, times as a zigzag varint of Unix
// seconds and a uvarint of nanoseconds. No reflection: opening the cookies of a request is
// on every proxied call's path, and gob or encoding/json would cost more than the crypto.
//
// A field added later is optional and last: written only when it is not empty, read only
// when bytes remain, so that payloads written before it still open (the token type of
// the access cookie, the grace entry and the Redis record: "" is Bearer, "DPoP" a bound
// token).
//
// A reader refuses an unknown format or kind, a length beyond the input, an over-long
// varint, nanoseconds outside [0, 1e9) and trailing bytes; it never panics.

const formatV1 = 1

// Payload kinds. The MAC already binds a sealed value to its cookie's name; the kind byte
// makes a value of one kind unreadable as another all the same.
const (
	kindAccess  = 'a'
	kindRefresh = 'r'
	kindID      = 'i'
	kindLogin   = 'l'
	kindGrace   = 'g'
	kindDerived = 'd' // a derived token shared in Redis (derived_redis.go)
)

var errMalformed = errors.New("session: malformed payload")

// binarySerializer is the securecookie.Serializer of every tokenhandler cookie: it encodes
// the payload types below through their AppendBinary and UnmarshalBinary methods.
type binarySerializer struct{}

func (binarySerializer) Serialize(src any) ([]byte, error) {
	m, ok := src.(encoding.BinaryAppender)
	if !ok {
		return nil, fmt.Errorf("session: serialize %T: no binary encoding", src)
	}
	return m.AppendBinary(make([]byte, 0, 512))
}

// stringUnmarshaler is UnmarshalBinary from a string: the payload types below decode
// without copying their input when it is a string already (the codec's cache of opened
// cookies keeps plaintexts as strings), and their string fields share its memory.
type stringUnmarshaler interface {
	unmarshalString(data string) error
}

var (
	_ stringUnmarshaler = (*accessPayload)(nil)
	_ stringUnmarshaler = (*refreshPayload)(nil)
	_ stringUnmarshaler = (*idPayload)(nil)
	_ stringUnmarshaler = (*loginPayload)(nil)
	_ stringUnmarshaler = (*gracePayload)(nil)
)

func (binarySerializer) Deserialize(src []byte, dst any) error {
	u, ok := dst.(encoding.BinaryUnmarshaler)
	if !ok {
		return fmt.Errorf("session: deserialize into %T: no binary encoding", dst)
	}
	return u.UnmarshalBinary(src)
}

// accessPayload is what the access cookie holds.
type accessPayload struct {
	Token         string
	Issued        time.Time
	Expiry        time.Time
	SessionID     string
	SessionExpiry time.Time
	TokenType     string // optional, last: "" is Bearer
}

func (p *accessPayload) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, formatV1, kindAccess)
	b = appendString(b, p.Token)
	b = appendTime(b, p.Issued)
	b = appendTime(b, p.Expiry)
	b = appendString(b, p.SessionID)
	b = appendTime(b, p.SessionExpiry)
	return appendOptional(b, p.TokenType), nil
}

func (p *accessPayload) UnmarshalBinary(data []byte) error { return p.unmarshalString(string(data)) }

func (p *accessPayload) unmarshalString(data string) error {
	d := newStringDecoder(data, kindAccess)
	p.Token = d.string()
	p.Issued = d.time()
	p.Expiry = d.time()
	p.SessionID = d.string()
	p.SessionExpiry = d.time()
	p.TokenType = d.optional()
	return d.finish()
}

// refreshPayload is what the refresh cookie holds.
type refreshPayload struct {
	Token         string
	SessionID     string
	SessionExpiry time.Time
}

func (p *refreshPayload) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, formatV1, kindRefresh)
	b = appendString(b, p.Token)
	b = appendString(b, p.SessionID)
	return appendTime(b, p.SessionExpiry), nil
}

func (p *refreshPayload) UnmarshalBinary(data []byte) error { return p.unmarshalString(string(data)) }

func (p *refreshPayload) unmarshalString(data string) error {
	d := newStringDecoder(data, kindRefresh)
	p.Token = d.string()
	p.SessionID = d.string()
	p.SessionExpiry = d.time()
	return d.finish()
}

// idPayload is what the ID cookie holds.
type idPayload struct {
	Token         string
	Subject       string
	SID           string
	Name          string
	Email         string
	SessionID     string
	SessionExpiry time.Time
}

func (p *idPayload) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, formatV1, kindID)
	b = appendString(b, p.Token)
	b = appendString(b, p.Subject)
	b = appendString(b, p.SID)
	b = appendString(b, p.Name)
	b = appendString(b, p.Email)
	b = appendString(b, p.SessionID)
	return appendTime(b, p.SessionExpiry), nil
}

func (p *idPayload) UnmarshalBinary(data []byte) error { return p.unmarshalString(string(data)) }

func (p *idPayload) unmarshalString(data string) error {
	d := newStringDecoder(data, kindID)
	p.Token = d.string()
	p.Subject = d.string()
	p.SID = d.string()
	p.Name = d.string()
	p.Email = d.string()
	p.SessionID = d.string()
	p.SessionExpiry = d.time()
	return d.finish()
}

// loginPayload is what a login cookie holds.
type loginPayload Login

func (p *loginPayload) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, formatV1, kindLogin)
	b = appendString(b, p.State)
	b = appendString(b, p.Nonce)
	b = appendString(b, p.Verifier)
	b = appendString(b, p.ReturnTo)
	return appendTime(b, p.Created), nil
}

func (p *loginPayload) UnmarshalBinary(data []byte) error { return p.unmarshalString(string(data)) }

func (p *loginPayload) unmarshalString(data string) error {
	d := newStringDecoder(data, kindLogin)
	p.State = d.string()
	p.Nonce = d.string()
	p.Verifier = d.string()
	p.ReturnTo = d.string()
	p.Created = d.time()
	return d.finish()
}

// gracePayload is what a rotation grace entry holds (sealed with AES-GCM, not securecookie).
type gracePayload Tokens

func (p *gracePayload) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, formatV1, kindGrace)
	b = appendString(b, p.AccessToken)
	b = appendTime(b, p.AccessIssued)
	b = appendTime(b, p.AccessExpiry)
	b = appendString(b, p.RefreshToken)
	b = appendString(b, p.IDToken)
	if p.For != "" {
		// Only then, after the token type (written even when empty): an entry of the
		// session's own tokens reads as before.
		b = appendString(b, p.TokenType)
		return appendString(b, p.For), nil
	}
	return appendOptional(b, p.TokenType), nil
}

func (p *gracePayload) UnmarshalBinary(data []byte) error { return p.unmarshalString(string(data)) }

func (p *gracePayload) unmarshalString(data string) error {
	d := newStringDecoder(data, kindGrace)
	p.AccessToken = d.string()
	p.AccessIssued = d.time()
	p.AccessExpiry = d.time()
	p.RefreshToken = d.string()
	p.IDToken = d.string()
	p.TokenType = d.optional()
	p.For = d.optional()
	return d.finish()
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendString(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendOptional appends an optional last field: nothing when s is empty.
func appendOptional(b []byte, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(b, s)
}

func appendTime(b []byte, t time.Time) []byte {
	sec := t.Unix()
	b = appendUvarint(b, uint64(sec<<1)^uint64(sec>>63)) // zigzag
	return appendUvarint(b, uint64(t.Nanosecond()))
}

// decoder reads the fields of one payload. The input is copied into one string up front
// (or is a string already), so every string field is a substring of it: at most one
// allocation per payload, not one per field. After the first error every read returns a
// zero value and finish reports the error.
type decoder struct {
	s   string
	pos int
	err error
}

func newDecoder(data []byte, kind byte) decoder { return newStringDecoder(string(data), kind) }

func newStringDecoder(data string, kind byte) decoder {
	var d decoder
	switch {
	case len(data) < 2:
		d.err = fmt.Errorf("%w: too short", errMalformed)
	case data[0] != formatV1:
		d.err = fmt.Errorf("%w: unknown format %d", errMalformed, data[0])
	case data[1] != kind:
		d.err = fmt.Errorf("%w: kind %q, want %q", errMalformed, data[1], kind)
	default:
		d.s = data[2:]
	}
	return d
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", errMalformed, what, d.pos+2)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if d.pos >= len(d.s) {
			d.fail("truncated varint")
			return 0
		}
		c := d.s[d.pos]
		d.pos++
		if shift == 63 && c > 1 {
			d.fail("varint overflows 64 bits")
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.s)-d.pos) {
		d.fail("string longer than the input")
		return ""
	}
	s := d.s[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return s
}

// optional reads an optional last field: "" when no bytes remain.
func (d *decoder) optional() string {
	if d.err != nil || d.pos == len(d.s) {
		return ""
	}
	return d.string()
}

func (d *decoder) time() time.Time {
	u := d.uvarint()
	nsec := d.uvarint()
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		d.fail("nanoseconds out of range")
		return time.Time{}
	}
	sec := int64(u>>1) ^ -int64(u&1) // zigzag
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *decoder) finish() error {
	if d.err == nil && d.pos != len(d.s) {
		d.fail("trailing bytes")
	}
	return d.err
}
