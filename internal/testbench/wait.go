package testbench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Poll calls cond every interval until it reports true, returns an error, or ctx ends.
// It is for conditions nothing announces, such as a process becoming ready; wait on
// an event (a channel) wherever there is one.
func Poll(ctx context.Context, interval time.Duration, cond func(context.Context) (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testbench: poll: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// WaitHTTP polls url every interval until it answers status want, p exits (p may be
// nil), or ctx ends, and returns when the answer came. The error wraps ErrExited when
// p exited first, ctx's error when time ran out.
func WaitHTTP(ctx context.Context, p *Process, url string, want int, interval time.Duration) (time.Time, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	var last error
	var at time.Time
	var exited <-chan struct{}
	if p != nil {
		exited = p.Done()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return time.Time{}, fmt.Errorf("testbench: wait for %s: %w", url, err)
		}
		if resp, err := c.Do(req); err != nil {
			last = err
		} else {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return time.Now(), nil
			}
			last = fmt.Errorf("status %s", resp.Status)
		}
		if p != nil && p.Exited() {
			return at, fmt.Errorf("testbench: %s exited (%v) before %s answered %d: %w", p.name, p.Err(), url, want, ErrExited)
		}
		select {
		case <-ctx.Done():
			return at, fmt.Errorf("testbench: %s did not answer %d (last: %v): %w", url, want, last, ctx.Err())
		case <-exited:
		case <-t.C:
		}
	}
}
