// Command chartcheck reads the output of `helm template` for the tokenhandler chart and
// fails unless every object decodes strictly into its Kubernetes API type (an unknown or
// duplicate field is an error) and the chart's promises hold: a non-root, read-only,
// capability-free pod with resources; probes and metrics on the admin port; secrets only
// as files from Secrets, never a value in a ConfigMap; a graceful drain; Redis when more
// than one replica may run. It prints every problem, then exits 1.
//
//	helm template th ../tokenhandler -f values.yaml | chartcheck [-require Kind,...] [-check-config BIN]
//
// -check-config runs `BIN check-config` (the tokenhandler binary) on the rendered
// configuration file, with stand-in files for the secrets it names, so a key the product
// does not know is caught too.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	require := flag.String("require", "", "comma-separated `kinds` that must be rendered")
	checkConfig := flag.String("check-config", "", "run `tokenhandler` check-config on the rendered configuration")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: helm template ... | chartcheck [-require Kind,...] [-check-config BIN]")
		os.Exit(2)
	}
	if err := run(os.Stdin, os.Stdout, *require, *checkConfig); err != nil {
		fmt.Fprintf(os.Stderr, "chartcheck: %v\n", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer, require, checkConfig string) error {
	objs, err := decodeAll(bufio.NewReader(in))
	if err != nil {
		return err
	}
	m := newManifest(objs)
	var kinds []string
	if require != "" {
		kinds = strings.Split(require, ",")
	}
	problems := m.check(kinds)
	if len(problems) == 0 && checkConfig != "" {
		if err := m.productCheck(checkConfig); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problem(s):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	counts := map[string]int{}
	for _, o := range objs {
		counts[o.kind]++
	}
	_, err = fmt.Fprintf(out, "chartcheck: %d objects decoded strictly, all checks pass %v\n", len(objs), counts)
	return err
}

var errNoObjects = errors.New("no objects in the input")
