// Command osvindex builds the vulnerability database govulncheck reads with
// -db file:///DIR from a directory of OSV entries (golang.org/x/vulndb's data/osv):
//
//	DIR/index/db.json       {"modified": the newest entry's modified time}
//	DIR/index/modules.json  every module with the entries affecting it (id, modified,
//	                        the latest fix where there is one), sorted by path and id
//	DIR/index/vulns.json    every entry's id, modified time and aliases
//	DIR/ID/<id>.json        each entry as it is
//
// It writes what golang.org/x/vulndb's cmd/indexdb writes (the index files are byte for
// byte the same; scripts/vulncheck.sh's -compare checks that), but needs nothing beyond
// the standard library and golang.org/x/mod: indexdb's imports (gRPC, go-git, Google
// Cloud clients) take minutes to build on a cold CI machine.
//
// Usage: osvindex -vulns DIR -out DIR
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

// entry is what the index needs of an OSV entry.
type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases"`
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
		Ranges []osvRange `json:"ranges"`
	} `json:"affected"`
}

type osvRange struct {
	Type   string `json:"type"`
	Events []struct {
		Introduced string `json:"introduced"`
		Fixed      string `json:"fixed"`
	} `json:"events"`
}

// osvTime marshals as the OSV format wants: RFC 3339 in UTC.
type osvTime time.Time

func (t osvTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Time(t).UTC().Format(time.RFC3339))
}

type dbMeta struct {
	Modified osvTime `json:"modified"`
}

type module struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type moduleVuln struct {
	ID       string  `json:"id"`
	Modified osvTime `json:"modified"`
	Fixed    string  `json:"fixed,omitempty"`
}

type vuln struct {
	ID       string   `json:"id"`
	Modified osvTime  `json:"modified"`
	Aliases  []string `json:"aliases,omitempty"`
}

func main() {
	vulns := flag.String("vulns", "", "directory of OSV entries (GO-*.json)")
	out := flag.String("out", "", "directory to write the database to")
	flag.Parse()
	if *vulns == "" || *out == "" {
		log.Fatal("osvindex: -vulns and -out are required")
	}
	if err := build(*vulns, *out); err != nil {
		log.Fatal(err)
	}
}

func build(src, dst string) error {
	var (
		meta    dbMeta
		modules = map[string]*module{}
		index   []vuln
		seen    = map[string]bool{}
	)
	if err := os.MkdirAll(filepath.Join(dst, "ID"), 0o755); err != nil {
		return fmt.Errorf("osvindex: %w", err)
	}
	// WalkDir visits files in lexical order, as indexdb does: entries of one module with
	// the same id keep that order.
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() == "index.json" || filepath.Ext(d.Name()) != ".json" {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if e.ID == "" || strings.ContainsAny(e.ID, `/\`) {
			return fmt.Errorf("%s: bad id %q", path, e.ID)
		}
		if seen[e.ID] {
			return fmt.Errorf("%s: id %s appears twice", path, e.ID)
		}
		seen[e.ID] = true
		if e.Modified.After(time.Time(meta.Modified)) {
			meta.Modified = osvTime(e.Modified)
		}
		index = append(index, vuln{ID: e.ID, Modified: osvTime(e.Modified), Aliases: e.Aliases})
		for _, a := range e.Affected {
			m := modules[a.Package.Name]
			if m == nil {
				m = &module{Path: a.Package.Name, Vulns: []moduleVuln{}}
				modules[a.Package.Name] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: osvTime(e.Modified), Fixed: latestFixed(a.Ranges)})
		}
		return os.WriteFile(filepath.Join(dst, "ID", e.ID+".json"), raw, 0o644)
	})
	if err != nil {
		return fmt.Errorf("osvindex: %w", err)
	}
	if len(index) == 0 {
		return errors.New("osvindex: no OSV entries in " + src)
	}

	mods := make([]*module, 0, len(modules))
	for _, m := range modules {
		slices.SortStableFunc(m.Vulns, func(a, b moduleVuln) int { return strings.Compare(a.ID, b.ID) })
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b *module) int { return strings.Compare(a.Path, b.Path) })
	slices.SortFunc(index, func(a, b vuln) int { return strings.Compare(a.ID, b.ID) })
	for name, v := range map[string]any{"db.json": meta, "modules.json": mods, "vulns.json": index} {
		if err := writeJSON(filepath.Join(dst, "index", name), v); err != nil {
			return err
		}
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("osvindex: %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("osvindex: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("osvindex: %w", err)
	}
	return nil
}

// latestFixed is vulndb's osvutils.LatestFixed: the highest fixed version of the SEMVER
// ranges, or "" when none, or when the vulnerability was introduced again after it.
func latestFixed(ranges []osvRange) string {
	before := func(v, w string) bool { return semver.Compare("v"+v, "v"+w) < 0 }
	var latest string
	for _, r := range ranges {
		if r.Type != "SEMVER" {
			continue
		}
		for _, e := range r.Events {
			if e.Fixed != "" && before(latest, e.Fixed) {
				latest = e.Fixed
			}
		}
		for _, e := range r.Events {
			if e.Introduced != "" && e.Introduced != "0" && before(latest, e.Introduced) {
				latest = ""
				break
			}
		}
	}
	return latest
}
