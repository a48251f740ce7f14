package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Load reads, expands, decodes and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes, expands and validates configuration YAML.
func Parse(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	cfg := &Config{}
	if len(root.Content) > 0 {
		doc := root.Content[0]
		var errs fieldErrors
		expandEnv(doc)
		checkNode(doc, reflect.TypeOf(cfg).Elem(), "", &errs)
		if err := errs.err(); err != nil {
			return nil, err
		}
		if err := doc.Decode(cfg); err != nil {
			return nil, fmt.Errorf("invalid value: %w", err)
		}
	}
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${VAR} and ${VAR:-default} in every scalar value (never in
// keys), so an expanded secret can't change the document's structure.
func expandEnv(n *yaml.Node) {
	switch n.Kind {
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			m := envRef.FindStringSubmatch(ref)
			if v, ok := lookupEnv(m[1]); ok && v != "" {
				return v
			}
			return m[3]
		})
		// An unquoted, untagged ${PORT} resolves like any plain scalar (so it
		// can be a number); a quoted or !!str-tagged one stays a string.
		if n.Style == 0 {
			n.Tag = ""
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			expandEnv(n.Content[i])
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			expandEnv(c)
		}
	}
}

var (
	durationType = reflect.TypeOf(Duration(0))
	replicasType = reflect.TypeOf(Replicas(0))
)

// checkNode walks the document beside the Go type it decodes into and reports
// unknown keys and values of the wrong kind, each with its key path and line.
func checkNode(n *yaml.Node, t reflect.Type, path string, errs *fieldErrors) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Tag == "!!null" {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	where := func() string { return fmt.Sprintf("%s (line %d)", displayPath(path), n.Line) }
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			errs.add(where(), "must be a duration such as 30s or 2m")
		} else if _, err := parseDuration(n.Value); err != nil {
			errs.add(where(), "%q is not a duration: write it like 30s, 1m30s or 720h", n.Value)
		}
		return
	case t == replicasType:
		if n.Kind != yaml.ScalarNode {
			errs.add(where(), "must be auto or a whole number of at least 1 (got %s)", kindName(n))
		} else if _, err := parseReplicas(n.Value); err != nil {
			errs.add(where(), "must be auto or a whole number of at least 1, not %q", n.Value)
		}
		return
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			errs.add(where(), "must be a mapping of keys (got %s)", kindName(n))
			return
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if tag := strings.Split(f.Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
				fields[tag] = f.Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				errs.add(fmt.Sprintf("%s (line %d)", displayPath(join(path, k.Value)), k.Line), "unknown key%s", suggest(k.Value, fields))
				continue
			}
			checkNode(n.Content[i+1], ft, join(path, k.Value), errs)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if t.Elem().Kind() == reflect.String && n.Kind == yaml.ScalarNode {
				return // a comma-separated string list is accepted (see StringList)
			}
			errs.add(where(), "must be a list (got %s)", kindName(n))
			return
		}
		for i, c := range n.Content {
			checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			errs.add(where(), "must be a single value (got %s)", kindName(n))
			return
		}
		var err error
		switch t.Kind() {
		case reflect.Bool:
			_, err = strconv.ParseBool(n.Value)
			if err != nil {
				err = errors.New("must be true or false")
			}
		case reflect.Int, reflect.Int64, reflect.Uint64:
			_, err = strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
			if err != nil {
				err = errors.New("must be a whole number")
			}
		case reflect.Float32, reflect.Float64:
			_, err = strconv.ParseFloat(n.Value, 64)
			if err != nil {
				err = errors.New("must be a number")
			}
		}
		if err != nil {
			errs.add(where(), "%s, not %q", err, n.Value)
		}
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func suggest(key string, fields map[string]reflect.Type) string {
	var names []string
	for f := range fields {
		if strings.Contains(f, key) || strings.Contains(key, f) || editDistance(f, key) <= 2 {
			names = append(names, f)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", strings.Join(names, " or "))
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func displayPath(p string) string {
	if p == "" {
		return "(top level)"
	}
	return p
}

// fieldErrors collects every problem so one run reports them all.
type fieldErrors []string

func (e *fieldErrors) add(key, format string, args ...any) {
	*e = append(*e, key+": "+fmt.Sprintf(format, args...))
}

func (e fieldErrors) err() error {
	if len(e) == 0 {
		return nil
	}
	var b bytes.Buffer
	for i, s := range e {
		if i > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString(s)
	}
	return errors.New(b.String())
}

// Duration is a time.Duration written like "30s" or "2m" in YAML.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 30s", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func parseDuration(s string) (time.Duration, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	return time.ParseDuration(s)
}

// Replicas is how many bot processes share a platform's rate limits,
// written as a number or "auto" (the zero value): count the live ones in
// Redis.
type Replicas int

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *Replicas) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseReplicas(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not auto or a whole number of at least 1", n.Line, n.Value)
	}
	*r = v
	return nil
}

// Auto reports whether the live replicas are counted rather than fixed.
func (r Replicas) Auto() bool { return r == 0 }

// Share is the part of a rate limit each replica takes when the count is
// fixed: 1/r; 1 with auto, where the live count divides at run time.
func (r Replicas) Share() float64 {
	if r.Auto() {
		return 1
	}
	return 1 / float64(r)
}

// String implements fmt.Stringer: "auto" or the number.
func (r Replicas) String() string {
	if r.Auto() {
		return "auto"
	}
	return strconv.Itoa(int(r))
}

func parseReplicas(s string) (Replicas, error) {
	if s == "" || s == "auto" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, errors.New("want auto or a whole number of at least 1")
	}
	return Replicas(n), nil
}

// Secret is a string that never prints its value.
type Secret string

// String implements fmt.Stringer with a redacted value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString implements fmt.GoStringer with a redacted value.
func (s Secret) GoString() string { return s.String() }

// Value returns the secret itself, for the one place that needs it.
func (s Secret) Value() string { return string(s) }

// StringList is a list of strings written as a YAML list or as one
// comma-separated string (handy with ${VAR}).
type StringList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = nil
		for _, s := range strings.Split(n.Value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				*l = append(*l, s)
			}
		}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*l = list
	return nil
}

// Contains reports whether the list holds s.
func (l StringList) Contains(s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}
