package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable Load reads.
const EnvPrefix = "TH_"

// Load reads the YAML file at path ("" means no file: defaults and environment only),
// applies TH_* environment overrides (values from getenv; environ, as os.Environ returns
// it, is only scanned for unknown TH_* names), reads the *_file forms, and fills derived
// defaults (oidc.post_logout_redirect_url = public_url + "/").
//
// It returns an error for an unreadable file, YAML that does not decode (an unknown key is
// named by its full path), or an environment value that does not parse (naming the
// variable and its key); every bad variable is reported at once. Warnings (unknown TH_*
// variables) do not stop it. Load does not validate: call Validate.
func Load(path string, getenv func(string) string, environ []string) (*Config, []string, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("config: %w", err)
		}
		if err := decodeYAML(data, cfg); err != nil {
			return nil, nil, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if err := applyEnv(cfg, getenv); err != nil {
		return nil, nil, err
	}
	warnings := unknownEnv(environ)
	if err := readFiles(cfg); err != nil {
		return nil, nil, err
	}
	if cfg.OIDC.PostLogoutRedirectURL == "" && cfg.PublicURL != "" {
		cfg.OIDC.PostLogoutRedirectURL = strings.TrimSuffix(cfg.PublicURL, "/") + "/"
	}
	return cfg, warnings, nil
}

// decodeYAML decodes one YAML document over cfg. checkNode first reports unknown keys and
// badly shaped values by their full path; KnownFields stays on as a backstop.
func decodeYAML(data []byte, cfg *Config) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file: defaults
		}
		return err
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	if errs := checkNode(&doc, reflect.TypeFor[Config](), ""); len(errs) > 0 {
		return errors.Join(errs...)
	}
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(cfg)
}

// checkNode walks a YAML node against the type it decodes into and reports, with the
// key's full path and line, every mapping key that no yaml tag names and every value of the
// wrong shape. yaml.v3's own messages name Go types, not keys, and repeat the value, which
// may be a secret; these never repeat a value.
func checkNode(n *yaml.Node, t reflect.Type, path string) []error {
	switch {
	case n.Kind == yaml.DocumentNode:
		var errs []error
		for _, c := range n.Content {
			errs = append(errs, checkNode(c, t, path)...)
		}
		return errs
	case n.Kind == yaml.AliasNode:
		return nil // left to the decoder, which guards against alias loops
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return nil // null: the zero value
	case t.Kind() == reflect.Pointer:
		return checkNode(n, t.Elem(), path) // an optional value (routes[].token.dpop)
	}
	switch {
	case t.Kind() == reflect.Struct && t != durationType:
		if n.Kind != yaml.MappingNode {
			return []error{fmt.Errorf("line %d: %s: want a mapping of keys", n.Line, rootName(path))}
		}
		fields := yamlFields(t)
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				errs = append(errs, checkNode(v, t, path)...)
				continue
			}
			f, ok := fields[k.Value]
			if !ok || k.Kind != yaml.ScalarNode {
				errs = append(errs, fmt.Errorf("line %d: unknown key %s%s", k.Line, joinKey(path, k.Value), suggest(k.Value, fields)))
				continue
			}
			errs = append(errs, checkNode(v, f.Type, joinKey(path, k.Value))...)
		}
		return errs
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return []error{fmt.Errorf("line %d: %s: want a list", n.Line, path)}
		}
		var errs []error
		for i, c := range n.Content {
			errs = append(errs, checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	default:
		if n.Kind != yaml.ScalarNode {
			return []error{fmt.Errorf("line %d: %s: want %s", n.Line, path, describe(t))}
		}
		wantTag := map[reflect.Kind]string{reflect.Int: "!!int", reflect.Bool: "!!bool"}[t.Kind()]
		if wantTag != "" && t != durationType && n.ShortTag() != wantTag {
			// yaml.v3 would truncate 1.5 to 1 for an int
			return []error{fmt.Errorf("line %d: %s: want %s", n.Line, path, describe(t))}
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return []error{fmt.Errorf("line %d: %s: want %s", n.Line, path, describe(t))}
		}
		return nil
	}
}

func rootName(path string) string {
	if path == "" {
		return "the document"
	}
	return path
}

// describe names what a scalar of type t looks like, for messages.
func describe(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration such as "30s", "500ms" or "12h"`
	case t == byteSizeType:
		return `a size such as "64MiB", "512KiB" or "1048576"`
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int:
		return "an integer"
	default:
		return "a string"
	}
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest returns ` (did you mean "x"?)` for a key that differs from a known one only in
// case, dashes or underscores.
func suggest(key string, fields map[string]reflect.StructField) string {
	norm := func(s string) string { return strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(s)) }
	for k := range fields {
		if norm(k) == norm(key) {
			return fmt.Sprintf(" (did you mean %q?)", k)
		}
	}
	return ""
}

// yamlFields maps the yaml names of t's exported fields to the fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	m := make(map[string]reflect.StructField)
	for f := range t.Fields() {
		if name := yamlName(f); name != "" {
			m[name] = f
		}
	}
	return m
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// leaf is one configuration key that an environment variable can set.
type leaf struct {
	key   string // "oidc.client_secret"
	env   string // "TH_OIDC_CLIENT_SECRET"
	index []int  // field index path from Config
	typ   reflect.Type
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
	leavesOnce   = sync.OnceValue(func() []leaf { return collectLeaves(reflect.TypeFor[Config](), "", nil) })
)

// leaves returns every key of Config, found by walking the yaml tags, so that no key can
// lack its environment variable. A struct field is descended into; anything else (a
// scalar, a list of scalars, the list of routes) is one leaf.
func leaves() []leaf { return leavesOnce() }

func collectLeaves(t reflect.Type, path string, index []int) []leaf {
	var out []leaf
	for f := range t.Fields() {
		name := yamlName(f)
		if name == "" {
			continue
		}
		key := joinKey(path, name)
		idx := append(slices.Clip(index), f.Index...)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			out = append(out, collectLeaves(f.Type, key, idx)...)
			continue
		}
		out = append(out, leaf{key: key, env: EnvName(key), index: idx, typ: f.Type})
	}
	return out
}

// EnvName returns the environment variable of a key path: "oidc.client_secret" ->
// "TH_OIDC_CLIENT_SECRET".
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// applyEnv sets every key whose variable is non-empty, and reports every bad value.
func applyEnv(cfg *Config, getenv func(string) string) error {
	root := reflect.ValueOf(cfg).Elem()
	var errs []error
	for _, l := range leaves() {
		s := getenv(l.env)
		if s == "" {
			continue
		}
		if err := setFromString(root.FieldByIndex(l.index), s); err != nil {
			errs = append(errs, fmt.Errorf("config: %s (%s): %w", l.env, l.key, err))
		}
	}
	return errors.Join(errs...)
}

// setFromString parses s into v according to v's type. Error messages never repeat s: it
// may be a secret.
func setFromString(v reflect.Value, s string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return errors.New(`not a duration (want e.g. "30s", "500ms", "1h")`)
		}
		v.SetInt(int64(d))
		return nil
	}
	if v.Type() == byteSizeType {
		return v.Addr().Interface().(*ByteSize).UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return errors.New("not a boolean (want true or false)")
		}
		v.SetBool(b)
	case reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return errors.New("not an integer")
		}
		v.SetInt(int64(n))
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.String {
			items := splitList(s)
			sl := reflect.MakeSlice(v.Type(), len(items), len(items))
			for i, it := range items {
				sl.Index(i).SetString(it)
			}
			v.Set(sl)
			return nil
		}
		p := reflect.New(v.Type())
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(p.Interface()); err != nil {
			return fmt.Errorf("not a JSON array of objects: %w", err)
		}
		if dec.More() {
			return errors.New("not a JSON array of objects: data after the array")
		}
		v.Set(p.Elem())
	default:
		return fmt.Errorf("cannot set a %s from the environment", v.Type()) // a programming error; a test walks every key
	}
	return nil
}

// splitList splits a comma-separated list, trimming spaces and dropping empty items.
func splitList(s string) []string {
	var out []string
	for it := range strings.SplitSeq(s, ",") {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}

// unknownEnv warns about TH_* variables that name no key. Only names are reported, never
// values.
func unknownEnv(environ []string) []string {
	known := make(map[string]bool)
	for _, l := range leaves() {
		known[l.env] = true
	}
	var warnings []string
	seen := make(map[string]bool)
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || known[name] || seen[name] {
			continue
		}
		seen[name] = true
		w := fmt.Sprintf("unknown environment variable %s ignored", name)
		if s := nearEnv(name, known); s != "" {
			w += fmt.Sprintf(" (did you mean %s?)", s)
		}
		warnings = append(warnings, w)
	}
	sort.Strings(warnings)
	return warnings
}

// nearEnv returns a known variable that differs from name only by underscores, if any.
func nearEnv(name string, known map[string]bool) string {
	strip := func(s string) string { return strings.ReplaceAll(s, "_", "") }
	for k := range known {
		if strip(k) == strip(name) {
			return k
		}
	}
	return ""
}

// readFiles reads the *_file forms whose value is not set directly. Setting both is left
// for Validate to report.
func readFiles(cfg *Config) error {
	var errs []error
	read := func(key, file string) (string, bool) {
		if file == "" {
			return "", false
		}
		b, err := os.ReadFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s (%s): %w", key, EnvName(key), err))
			return "", false
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			errs = append(errs, fmt.Errorf("config: %s (%s): file %s is empty", key, EnvName(key), file))
			return "", false
		}
		return s, true
	}
	if cfg.OIDC.ClientSecret == "" {
		if s, ok := read("oidc.client_secret_file", cfg.OIDC.ClientSecretFile); ok {
			cfg.OIDC.ClientSecret, cfg.fromFile.clientSecret = Secret(s), true
		}
	}
	if len(cfg.Cookies.Keys) == 0 {
		if s, ok := read("cookies.keys_file", cfg.Cookies.KeysFile); ok {
			keys := parseKeysFile(s)
			if len(keys) == 0 {
				errs = append(errs, fmt.Errorf("config: cookies.keys_file (TH_COOKIES_KEYS_FILE): file %s holds no key", cfg.Cookies.KeysFile))
			}
			cfg.Cookies.Keys, cfg.fromFile.keys = keys, true
		}
	}
	if cfg.Redis.URL == "" {
		if s, ok := read("redis.url_file", cfg.Redis.URLFile); ok {
			cfg.Redis.URL, cfg.fromFile.redisURL = Secret(s), true
		}
	}
	return errors.Join(errs...)
}

// parseKeysFile returns the key pairs of a keys file: one a line, blank lines and lines
// starting with # skipped.
func parseKeysFile(s string) []Secret {
	var keys []Secret
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		keys = append(keys, Secret(line))
	}
	return keys
}
