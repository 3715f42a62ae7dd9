//go:build linux

package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

var setupColor = map[string]string{
	setupUpstream:    "#9e9e9e",
	setupBare:        "#607d8b",
	setupBareDefault: "#90a4ae",
	setupBaseline:    "#a1887f",
	setupCookie:      "#2e7d32",
	setupDPoP:        "#6a1b9a",
	setupQuiet:       "#66bb6a",
	setupRedis:       "#1565c0",
	setupO2P:         "#c62828",
}

// svg draws, for every steady scenario, each setup's throughput (left) and CPU per
// request (right) as horizontal bars, by hand: no dependency.
func (r *report) svg() string {
	const (
		width    = 960
		labelW   = 120
		panelW   = (width - labelW - 60) / 2
		barH     = 16
		gap      = 4
		headH    = 26
		top      = 50
		sectionB = 14
	)
	type row struct {
		setup           string
		rps, cpu, ratio float64
		hasRatio        bool
	}
	type section struct {
		title string
		rows  []row
	}
	var secs []section
	var upstreamNote string
	maxRPS, maxCPU := 0.0, 0.0
	for _, s := range r.Steady {
		sec := section{title: s.Scenario.Title}
		for _, setup := range s.Setups {
			m := s.summarize(setup)
			if setup == setupUpstream {
				// The API alone, several times any proxy: in the table, not on the scale.
				upstreamNote = fmt.Sprintf("The upstream alone (wrk straight to it) served %.0f req/s at %.0f µs of CPU per request; it is not drawn.", m.rps, m.cpu)
				continue
			}
			sec.rows = append(sec.rows, row{setup, m.rps, m.cpu, m.ratio, m.hasRatio && setup != setupBare})
			maxRPS = math.Max(maxRPS, m.rps)
			maxCPU = math.Max(maxCPU, m.cpu)
		}
		secs = append(secs, sec)
	}
	height := top + 30
	for _, s := range secs {
		height += headH + len(s.rows)*(barH+gap) + sectionB
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">tokenhandler benchmark, %s (medians of %d rounds, wrk -c%d)</text>`+"\n",
		10, r.Started.UTC().Format("2006-01-02"), r.Options.rounds, r.Options.conns)
	x1, x2 := labelW, labelW+panelW+40
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">throughput, req/s (higher is better)</text>`+"\n", x1, top-8)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">proxy CPU per request, µs (lower is better)</text>`+"\n", x2, top-8)
	y := top
	for _, s := range secs {
		fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold" fill="#333">%s</text>`+"\n", y+17, html.EscapeString(s.title))
		y += headH
		for _, rw := range s.rows {
			color := setupColor[rw.setup]
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" fill="#333">%s</text>`+"\n", labelW-8, y+barH-3, rw.setup)
			w1 := 0.0
			if maxRPS > 0 {
				w1 = rw.rps / maxRPS * float64(panelW-130)
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x1, y, w1, barH, color)
			label := fmt.Sprintf("%.0f", rw.rps)
			if rw.hasRatio {
				label += fmt.Sprintf(" (%.2f× bare)", rw.ratio)
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#333">%s</text>`+"\n", float64(x1)+w1+4, y+barH-3, label)
			w2 := 0.0
			if maxCPU > 0 && !math.IsNaN(rw.cpu) {
				w2 = rw.cpu / maxCPU * float64(panelW-70)
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x2, y, w2, barH, color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#333">%.0f</text>`+"\n", float64(x2)+w2+4, y+barH-3, rw.cpu)
			y += barH + gap
		}
		y += sectionB
	}
	if upstreamNote != "" {
		fmt.Fprintf(&b, `<text x="10" y="%d" fill="#555">%s</text>`+"\n", y+6, html.EscapeString(upstreamNote))
	}
	b.WriteString("</svg>\n")
	return b.String()
}
