package proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestBearerError(t *testing.T) {
	tests := []struct {
		name string
		vs   []string
		want string
	}{
		{"none", nil, ""},
		{"bare scheme", []string{"Bearer"}, ""},
		{"realm only", []string{`Bearer realm="api"`}, ""},
		{"invalid_token", []string{`Bearer realm="api", error="invalid_token", error_description="The access token expired"`}, "invalid_token"},
		{"token value", []string{`Bearer error=invalid_token`}, "invalid_token"},
		{"scheme case", []string{`bearer ERROR="insufficient_scope"`}, "insufficient_scope"},
		{"spaces around =", []string{`Bearer error = "invalid_token"`}, "invalid_token"},
		{"escaped quote before", []string{`Bearer error_description="say \"error=x\"", error="invalid_request"`}, "invalid_request"},
		{"other scheme's error", []string{`Basic realm="x", error="nope"`}, ""},
		{"second challenge", []string{`Basic realm="x", Bearer error="invalid_token"`}, "invalid_token"},
		{"second header", []string{`DPoP algs="ES256"`, `Bearer error="insufficient_scope"`}, "insufficient_scope"},
		{"token68 first", []string{`Negotiate abc==, Bearer error="invalid_token"`}, "invalid_token"},
		{"unterminated quote", []string{`Bearer error="invalid_tok`}, "invalid_tok"},
		{"garbage", []string{`"",,,=;;==`}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := bearerError(tc.vs); got != tc.want {
				t.Fatalf("bearerError(%q) = %q, want %q", tc.vs, got, tc.want)
			}
		})
	}
}

func FuzzBearerError(f *testing.F) {
	for _, s := range []string{`Bearer error="invalid_token"`, `Basic realm="x", Bearer error=x`, `Bearer error="a\"b`, `=,"`, `Bearer error=`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := bearerError([]string{v})
		if len(got) > len(v) {
			t.Fatalf("bearerError(%q) = %q, longer than its input", v, got)
		}
		if got != "" && !strings.Contains(strings.ToLower(v), "bearer") {
			t.Fatalf("bearerError(%q) = %q without a Bearer challenge", v, got)
		}
	})
}

func TestForwardingHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"X-Forwarded-For": true, "x-forwarded-host": true, "X_Forwarded_Proto": true, "X-Forwarded-User": true,
		"X-FORWARDED-ACCESS-TOKEN": true, "Forwarded": true, "X-Real-Ip": true, "x_real_ip": true,
		"X-Forwarded": false, "X-Forwardedfor": false, "Authorization": false, "Forwarded-X": false, "": false,
	} {
		if got := forwardingHeader(name); got != want {
			t.Errorf("forwardingHeader(%q) = %t, want %t", name, got, want)
		}
	}
}

func TestUpgradeKind(t *testing.T) {
	tests := []struct {
		method           string
		conn, up         []string
		upgrade, websock bool
	}{
		{"GET", nil, nil, false, false},
		{"GET", []string{"keep-alive"}, nil, false, false},
		{"GET", []string{"Upgrade"}, []string{"websocket"}, true, true},
		{"GET", []string{"keep-alive, upgrade"}, []string{"WebSocket"}, true, true},
		{"POST", []string{"Upgrade"}, []string{"websocket"}, true, false},
		{"GET", []string{"Upgrade"}, []string{"websocket", "h2c"}, true, false},
		{"GET", []string{"Upgrade"}, []string{"websocket, h2c"}, true, false},
		{"GET", nil, []string{"websocket"}, true, false},
		{"GET", []string{"Upgrade"}, nil, true, false},
		{"GET", []string{"Upgrade, HTTP2-Settings"}, []string{"h2c"}, true, false},
	}
	for _, tc := range tests {
		r, _ := http.NewRequest(tc.method, "http://h/api/", nil)
		r.Header["Connection"], r.Header["Upgrade"] = tc.conn, tc.up
		if up, ws := upgradeKind(r); up != tc.upgrade || ws != tc.websock {
			t.Errorf("upgradeKind(%s, Connection %q, Upgrade %q) = %t, %t; want %t, %t", tc.method, tc.conn, tc.up, up, ws, tc.upgrade, tc.websock)
		}
	}
}

func FuzzStripOwnCookies(f *testing.F) {
	for _, s := range []string{"a=1; " + atName + "=x; b=2", atName + ".0=x;" + atName + ".1=y", ";;=;", " a = 1 ;b",
		strings.Repeat("f=1; ", 20) + atName + "=x; g=2"} { // more foreign pairs than stripOwnCookies keeps on its stack
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"Cookie": {v}}
		stripOwnCookies(h, ownCookie)
		out := h["Cookie"]
		if len(out) > 1 {
			t.Fatalf("stripOwnCookies(%q) left %d Cookie headers, want at most 1", v, len(out))
		}
		var foreign []string
		for part := range strings.SplitSeq(v, ";") {
			if part = strings.TrimSpace(part); part != "" && !ownCookie(cookieName(part)) {
				foreign = append(foreign, part)
			}
		}
		var kept []string
		if len(out) == 1 {
			for part := range strings.SplitSeq(out[0], ";") {
				if part = strings.TrimSpace(part); part != "" {
					kept = append(kept, part)
				}
			}
		}
		if !slices.Equal(kept, foreign) {
			t.Fatalf("stripOwnCookies(%q) kept %q, want %q", v, kept, foreign)
		}
		// Whatever net/http would read from what is left holds none of ours.
		r := &http.Request{Header: h}
		for _, c := range r.Cookies() {
			if ownCookie(c.Name) {
				t.Fatalf("stripOwnCookies(%q) left cookie %q", v, c.Name)
			}
		}
	})
}
