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
	"unicode"
	"unicode/utf8"

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
		return nil, syntaxError(data, err)
	}
	cfg := &Config{}
	errs := fieldErrors{lines: map[string]int{}, env: map[string][]string{}}
	if len(root.Content) > 0 {
		doc := root.Content[0]
		expandEnv(doc, "", errs.env)
		checkNode(doc, reflect.TypeOf(cfg).Elem(), "", &errs)
		if err := errs.err(); err != nil {
			return nil, err
		}
		if err := doc.Decode(cfg); err != nil {
			return nil, fmt.Errorf("invalid value: %w", err)
		}
	}
	cfg.applyDefaults()
	cfg.validate(&errs)
	if err := errs.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// maxScanLines bounds the files syntaxError searches for the problem line.
const maxScanLines = 2000

var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

// syntaxError reports a YAML syntax error at the line of the problem.
// yaml.v3 names the line where the enclosing construct (a mapping, a list,
// a quoted string) begins, and for parser errors one less than that (a
// 0-based mark printed as is), so a bad indentation on line 5 of a list
// opened on line 4 reads "line 3". The problem's line is the first line
// whose prefix of the file fails with the very same error: the parser
// reads the file in order, so it stops at the same token there. The
// search starts at the line yaml.v3 named, which is never after the
// problem.
func syntaxError(data []byte, err error) error {
	msg := err.Error()
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("invalid YAML: %w", err)
	}
	problem := msg[len(m[0]):]
	from := 1
	if m[1] != "" {
		from, _ = strconv.Atoi(m[1])
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > maxScanLines {
		return fmt.Errorf("invalid YAML: %w", err)
	}
	end := 0
	for i, l := range lines {
		end += len(l)
		if i+1 < from {
			continue
		}
		var n yaml.Node
		if e := yaml.Unmarshal(data[:end], &n); e != nil && e.Error() == msg {
			return fmt.Errorf("invalid YAML: line %d: %s", i+1, problem)
		}
	}
	return fmt.Errorf("invalid YAML: %w", err)
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${VAR} and ${VAR:-default} in every scalar value (never in
// keys), so an expanded secret can't change the document's structure. It
// notes in env which variables each key's value read, by key path.
func expandEnv(n *yaml.Node, path string, env map[string][]string) {
	switch n.Kind {
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "${") {
			return
		}
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			m := envRef.FindStringSubmatch(ref)
			env[path] = append(env[path], m[1])
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
			expandEnv(n.Content[i], join(path, n.Content[i-1].Value), env)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			expandEnv(c, fmt.Sprintf("%s[%d]", path, i), env)
		}
	}
}

var (
	durationType = reflect.TypeOf(Duration(0))
	replicasType = reflect.TypeOf(Replicas(0))
)

// checkNode walks the document beside the Go type it decodes into and reports
// unknown keys and values of the wrong kind, each with its key path and line.
// It notes each key's line in errs, for the errors validation finds later.
func checkNode(n *yaml.Node, t reflect.Type, path string, errs *fieldErrors) {
	if _, ok := errs.lines[path]; !ok {
		errs.lines[path] = n.Line
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Tag == "!!null" {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			errs.add(path, "must be a duration such as 30s or 2m")
		} else if d, err := parseDuration(n.Value); err != nil {
			errs.add(path, "%q is not a duration: write it like 30s, 1m30s or 720h", n.Value)
		} else if d < 0 {
			errs.add(path, "must not be negative, not %s", n.Value)
		}
		return
	case t == replicasType:
		if n.Kind != yaml.ScalarNode {
			errs.add(path, "must be auto or a whole number of at least 1 (got %s)", kindName(n))
		} else if _, err := parseReplicas(n.Value); err != nil {
			errs.add(path, "must be auto or a whole number of at least 1, not %q", n.Value)
		}
		return
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			errs.add(path, "must be a mapping of keys (got %s)", kindName(n))
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
			key := join(path, k.Value)
			errs.lines[key] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				errs.add(key, "unknown key%s", suggest(k.Value, fields))
				continue
			}
			checkNode(n.Content[i+1], ft, key, errs)
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			errs.add(path, "must be a mapping of keys (got %s)", kindName(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := join(path, n.Content[i].Value)
			errs.lines[key] = n.Content[i].Line
			checkNode(n.Content[i+1], t.Elem(), key, errs)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if t.Elem().Kind() == reflect.String && n.Kind == yaml.ScalarNode {
				return // a comma-separated string list is accepted (see StringList)
			}
			errs.add(path, "must be a list (got %s)", kindName(n))
			return
		}
		for i, c := range n.Content {
			checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			errs.add(path, "must be a single value (got %s)", kindName(n))
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
			errs.add(path, "%s, not %q", err, n.Value)
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

// fieldErrors collects every problem so one run reports them all, each
// under its key path and, when the file has the key, its line.
type fieldErrors struct {
	lines map[string]int      // key path (ark.api_key, models[0].id) → its line
	env   map[string][]string // key path → the variables its ${…} read
	msgs  []string
}

func (e *fieldErrors) add(key, format string, args ...any) {
	e.msgs = append(e.msgs, e.at(key)+": "+fmt.Sprintf(format, args...))
}

// at names key, with its line when the file has it.
func (e *fieldErrors) at(key string) string {
	if line, ok := e.lines[key]; ok {
		return fmt.Sprintf("%s (line %d)", displayPath(key), line)
	}
	return displayPath(key)
}

// setHint says how to give key a value: set the environment variable the
// file reads it from; else, for a key written in the file, write variable
// (the name the example config.yaml uses) there; else add the key.
func (e *fieldErrors) setHint(key, variable string) string {
	if vars := e.env[key]; len(vars) > 0 {
		return fmt.Sprintf("set the environment variable %s (read by %s)", strings.Join(vars, " or "), key)
	}
	if line, ok := e.lines[key]; ok {
		return fmt.Sprintf("write ${%s} as %s's value (line %d) and set %s", variable, key, line, variable)
	}
	parent, leaf, _ := strings.Cut(key, ".")
	return fmt.Sprintf("add %s: ${%s} under %s: and set %s", leaf, variable, parent, variable)
}

// source names what gives key its value: the environment variables the
// file reads it from, else the key.
func (e *fieldErrors) source(key string) string {
	if vars := e.env[key]; len(vars) > 0 {
		return strings.Join(vars, " and ")
	}
	return key
}

func (e fieldErrors) err() error {
	if len(e.msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(e.msgs, "\n  "))
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

// UnmarshalYAML implements yaml.Unmarshaler: the value without the spaces
// and line breaks around it that copying and pasting leaves.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	*s = Secret(strings.TrimSpace(n.Value))
	return nil
}

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

// checkSecret refuses a secret holding a character no key or token has: a
// space or line break inside it, a control character, a quote or anything
// beyond ASCII, as copying from a web page or a quoted .env line leaves.
// The error says which character and where, never the value.
func checkSecret(errs *fieldErrors, key string, s Secret) {
	v := s.Value()
	pos := 0
	for _, r := range v {
		pos++
		what, hint := "", "copy it again: keys and tokens are one unbroken run of letters, digits and punctuation"
		switch {
		case r == '"' || r == '\'':
			what, hint = "a quote", "write the value without quotes (docker run --env-file keeps them)"
		case r == '\n' || r == '\r':
			what = "a line break"
		case unicode.IsSpace(r):
			what = "a space"
		case r < 0x20 || r == 0x7f:
			what = fmt.Sprintf("the control character U+%04X", r)
		case r > 0x7e:
			what = fmt.Sprintf("the non-ASCII character U+%04X", r)
		default:
			continue
		}
		errs.add(key, "has %s at character %d of %d (the value is not shown): %s", what, pos, utf8.RuneCountInString(v), hint)
		return
	}
}

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
