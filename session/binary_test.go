package session

import (
	"bytes"
	"encoding"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

type payload interface {
	encoding.BinaryAppender
	encoding.BinaryUnmarshaler
}

type roundTrip struct {
	name  string
	in    payload
	out   payload
	equal func() bool
}

func TestBinaryRoundTrip(t *testing.T) {
	now := time.Now()
	times := []time.Time{{}, now, time.Unix(0, 0), time.Unix(-1, 999999999), time.Unix(math.MaxInt32*4, 1), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}
	for _, tm := range times {
		a, a2 := &accessPayload{Token: strings.Repeat("a", 5000), Issued: tm, Expiry: tm.Add(time.Hour), SessionID: NewID(), SessionExpiry: tm}, new(accessPayload)
		r, r2 := &refreshPayload{Token: "rt", SessionID: "sid", SessionExpiry: tm}, new(refreshPayload)
		i, i2 := &idPayload{Token: "x.y.z", Subject: "sub", SID: "", Name: "Zoë ✓", Email: "z@example.com", SessionID: "s", SessionExpiry: tm}, new(idPayload)
		l, l2 := &loginPayload{State: "st", Nonce: "no", Verifier: "ve", ReturnTo: "/x?y=1", Created: tm}, new(loginPayload)
		g, g2 := &gracePayload{AccessToken: "at", AccessIssued: tm, AccessExpiry: tm, RefreshToken: "", IDToken: "id"}, new(gracePayload)
		tests := []roundTrip{
			{"access", a, a2, func() bool {
				return a.Token == a2.Token && a.Issued.Equal(a2.Issued) && a.Expiry.Equal(a2.Expiry) && a.SessionID == a2.SessionID && a.SessionExpiry.Equal(a2.SessionExpiry)
			}},
			{"refresh", r, r2, func() bool {
				return r.Token == r2.Token && r.SessionID == r2.SessionID && r.SessionExpiry.Equal(r2.SessionExpiry)
			}},
			{"id", i, i2, func() bool {
				return i.Token == i2.Token && i.Subject == i2.Subject && i.SID == i2.SID && i.Name == i2.Name && i.Email == i2.Email && i.SessionID == i2.SessionID && i.SessionExpiry.Equal(i2.SessionExpiry)
			}},
			{"login", l, l2, func() bool {
				return l.State == l2.State && l.Nonce == l2.Nonce && l.Verifier == l2.Verifier && l.ReturnTo == l2.ReturnTo && l.Created.Equal(l2.Created)
			}},
			{"grace", g, g2, func() bool {
				return g.AccessToken == g2.AccessToken && g.AccessIssued.Equal(g2.AccessIssued) && g.AccessExpiry.Equal(g2.AccessExpiry) && g.RefreshToken == g2.RefreshToken && g.IDToken == g2.IDToken
			}},
		}
		for _, tc := range tests {
			t.Run(tc.name+"/"+tm.String(), func(t *testing.T) {
				b, err := tc.in.AppendBinary([]byte("prefix"))
				if err != nil {
					t.Fatalf("AppendBinary() = %v", err)
				}
				if !bytes.HasPrefix(b, []byte("prefix")) {
					t.Fatalf("AppendBinary() clobbered the bytes it appends to")
				}
				if err := tc.out.UnmarshalBinary(b[len("prefix"):]); err != nil {
					t.Fatalf("UnmarshalBinary(AppendBinary()) = %v", err)
				}
				if !tc.equal() {
					t.Errorf("UnmarshalBinary(AppendBinary(%s)) has other fields than the input", tc.name)
				}
			})
		}
	}
	// The zero time survives as the zero time (IsZero), not as year 1 somewhere else.
	var p accessPayload
	b, _ := (&accessPayload{}).AppendBinary(nil)
	if err := p.UnmarshalBinary(b); err != nil || !p.Issued.IsZero() || !p.SessionExpiry.IsZero() {
		t.Errorf("zero times round-trip to %v, %v (err %v), want zero times", p.Issued, p.SessionExpiry, err)
	}
}

func TestBinaryRefusesMalformed(t *testing.T) {
	good, _ := (&refreshPayload{Token: "rt", SessionID: "sid", SessionExpiry: time.Unix(1e9, 5)}).AppendBinary(nil)
	mutate := func(f func([]byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"one byte", []byte{formatV1}},
		{"unknown format", mutate(func(b []byte) []byte { b[0] = 2; return b })},
		{"other kind", mutate(func(b []byte) []byte { b[1] = kindAccess; return b })},
		{"truncated", good[:len(good)-1]},
		{"truncated in a string", good[:4]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"string longer than input", []byte{formatV1, kindRefresh, 0x7f, 'a'}},
		{"huge string length", []byte{formatV1, kindRefresh, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"varint over 64 bits", []byte{formatV1, kindRefresh, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}},
		{"varint never ends", []byte{formatV1, kindRefresh, 0x80, 0x80, 0x80}},
		{"nanoseconds out of range", []byte{formatV1, kindRefresh, 0, 0, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p refreshPayload
			if err := p.UnmarshalBinary(tc.in); !errors.Is(err, errMalformed) {
				t.Errorf("UnmarshalBinary(%x) = %v, want errMalformed", tc.in, err)
			}
		})
	}
}

func TestSerializerRefusesOtherTypes(t *testing.T) {
	if _, err := (binarySerializer{}).Serialize("a string"); err == nil {
		t.Errorf("Serialize(string) = nil error, want an error")
	}
	var s string
	if err := (binarySerializer{}).Deserialize([]byte{1, 2}, &s); err == nil {
		t.Errorf("Deserialize(into *string) = nil error, want an error")
	}
}

// FuzzDeserialize feeds arbitrary bytes to every payload decoder: no panic, and whatever
// decodes re-encodes to something that decodes to the same encoding.
func FuzzDeserialize(f *testing.F) {
	now := time.Unix(1700000000, 123)
	for _, p := range []encoding.BinaryAppender{
		&accessPayload{Token: "at", Issued: now, Expiry: now, SessionID: "s", SessionExpiry: now},
		&refreshPayload{Token: "rt", SessionID: "s", SessionExpiry: now},
		&idPayload{Token: "id", Subject: "sub", SID: "sid", Name: "n", Email: "e", SessionID: "s", SessionExpiry: now},
		&loginPayload{State: "st", Nonce: "n", Verifier: "v", ReturnTo: "/", Created: now},
		&gracePayload{AccessToken: "at", RefreshToken: "rt"},
	} {
		b, _ := p.AppendBinary(nil)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{formatV1, kindAccess, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, fresh := range []func() payload{
			func() payload { return new(accessPayload) },
			func() payload { return new(refreshPayload) },
			func() payload { return new(idPayload) },
			func() payload { return new(loginPayload) },
			func() payload { return new(gracePayload) },
		} {
			p := fresh()
			if err := (binarySerializer{}).Deserialize(data, p); err != nil {
				continue
			}
			again, err := p.AppendBinary(nil)
			if err != nil {
				t.Fatalf("AppendBinary() after a successful decode = %v", err)
			}
			q := fresh()
			if err := q.UnmarshalBinary(again); err != nil {
				t.Fatalf("UnmarshalBinary(re-encoded %T) = %v", p, err)
			}
			if third, _ := q.AppendBinary(nil); !bytes.Equal(third, again) {
				t.Fatalf("%T does not re-encode stably", p)
			}
		}
	})
}

// TestTokenTypeIsOptionalAndLast proves the compatibility of the token type: a payload
// written before it (no trailing field) opens as a bearer token, a bound one keeps
// "DPoP", and a bearer payload is byte-for-byte what it was before the field existed.
func TestTokenTypeIsOptionalAndLast(t *testing.T) {
	tm := time.Unix(1_700_000_000, 5).UTC()
	old := &accessPayload{Token: "at", Issued: tm, Expiry: tm, SessionID: "s", SessionExpiry: tm}
	oldBytes, _ := old.AppendBinary(nil)
	// The format as it was: format, kind, token, issued, expiry, session id, expiry.
	want := append([]byte{formatV1, kindAccess}, appendString(nil, "at")...)
	want = appendTime(appendTime(want, tm), tm)
	want = appendTime(appendString(want, "s"), tm)
	if string(oldBytes) != string(want) {
		t.Fatalf("a bearer access payload changed its encoding: %x, want %x", oldBytes, want)
	}
	var got accessPayload
	if err := got.UnmarshalBinary(oldBytes); err != nil || got.TokenType != "" {
		t.Fatalf("old payload: TokenType %q, err %v", got.TokenType, err)
	}
	bound := *old
	bound.TokenType = "DPoP"
	b, _ := bound.AppendBinary(nil)
	if err := got.UnmarshalBinary(b); err != nil || got != bound {
		t.Fatalf("bound payload round trip = %+v, %v; want %+v", got, err, bound)
	}
	if err := got.UnmarshalBinary(append(b, 0)); err == nil {
		t.Error("a byte after the optional field was accepted")
	}
	g := &gracePayload{AccessToken: "a", RefreshToken: "r", TokenType: "DPoP"}
	gb, _ := g.AppendBinary(nil)
	var g2 gracePayload
	if err := g2.UnmarshalBinary(gb); err != nil || g2.TokenType != "DPoP" {
		t.Errorf("grace payload TokenType = %q, %v", g2.TokenType, err)
	}
}
