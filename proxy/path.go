package proxy

import (
	"net/url"
	"strings"
)

// outPath returns the path and raw path to send upstream for the clean, matched path of
// in: the matched path itself, less the prefix (keeping its leading "/") with
// strip_prefix, behind the upstream's own base path.
func (rt *route) outPath(in *url.URL) (p, raw string) {
	p, raw = in.Path, in.RawPath
	if rt.strip {
		p = p[len(rt.prefix)-1:]
		if raw != "" {
			if strings.HasPrefix(raw, rt.prefix) {
				raw = raw[len(rt.prefix)-1:]
			} else {
				raw = "" // the prefix was %-encoded; let net/url encode the rest
			}
		}
	}
	if rt.base != "" {
		p = rt.base + p
		if raw != "" {
			raw = rt.baseRaw + raw
		}
	}
	return p, raw
}
