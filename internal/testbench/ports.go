package testbench

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
)

// FreePorts returns n distinct loopback ports that were free a moment ago. Whoever
// binds them later may lose one to another process in between: callers that start a
// server on them retry with new ports when it exits before it is ready.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testbench: pick a free port: %w", err)
		}
		ls = append(ls, l) // held until all are picked, so they are distinct
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreePort returns one loopback port that was free a moment ago (see FreePorts).
func FreePort() (int, error) {
	p, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

// RandomHex returns n random bytes, hex-encoded: client secrets, ids.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand does not fail
	return hex.EncodeToString(b)
}
