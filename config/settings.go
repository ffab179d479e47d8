package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrHelp is returned by LoadPoller and LoadDispatcher when -h or --help was
// given. Print PollerUsage or DispatcherUsage and exit 0.
var ErrHelp = flag.ErrHelp

// EnvPrefix starts the environment variable of every setting.
const EnvPrefix = "POLLHOOK_"

// EnvName is the environment variable of the flag name: "nats-url" →
// "POLLHOOK_NATS_URL".
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// sourceKind orders the sources of a value, weakest first.
type sourceKind int

const (
	fromDefault sourceKind = iota
	fromFile
	fromEnv
	fromFlag
)

// source says where a raw value came from, for error messages.
type source struct {
	kind sourceKind
	name string // environment variable or file path
	line int    // file line
}

func (s source) String() string {
	switch s.kind {
	case fromFlag:
		return "command line"
	case fromEnv:
		return s.name
	case fromFile:
		return fmt.Sprintf("%s line %d", s.name, s.line)
	default:
		return "default"
	}
}

// yamlKind is what a setting accepts in YAML, beyond any scalar.
type yamlKind int

const (
	yamlText yamlKind = iota // any scalar, parsed from its text
	yamlBool                 // !!bool only
	yamlInt                  // !!int only
	yamlList                 // a scalar or a sequence of scalars (joined by commas)
)

// setting is one process setting: a flag, its environment variable and YAML
// key, a default, and how to parse a raw value into its destination.
type setting struct {
	name   string // flag name and YAML key
	arg    string // placeholder in usage, e.g. "duration"
	def    string // default as text, parsed like any source; "" leaves the zero value
	usage  string
	kind   yamlKind
	isBool bool // a flag that may be given without a value
	noFile bool // not settable in the YAML file (--config itself)
	secret bool // the default is not shown and values are never quoted

	// apply parses raw and stores the result. Its error says what is wrong
	// with the value, without the setting's name or the source.
	apply func(raw string) error

	// Resolved by load: the winning raw value and its source.
	raw   string
	src   source
	isSet bool // given by a flag, the environment or the file
}

// settingError is a bad value of one setting.
func settingError(st *setting, src source, msg string) error {
	return fmt.Errorf("--%s: %s (from %s)", st.name, msg, src)
}

// settings is the set of settings of one binary.
type settings struct {
	cmd  string
	list []*setting
}

// add registers a setting whose raw text parse turns into a T stored in dst.
// It is the one place where a setting is defined; the struct field, flag,
// environment variable, YAML key and default all follow from it.
func add[T any](s *settings, dst *T, name, arg, def, usage string, parse func(string) (T, error), opts ...func(*setting)) {
	st := &setting{name: name, arg: arg, def: def, usage: usage}
	st.apply = func(raw string) error {
		v, err := parse(raw)
		if err != nil {
			return err
		}
		*dst = v
		return nil
	}
	for _, o := range opts {
		o(st)
	}
	s.list = append(s.list, st)
}

func boolSetting(st *setting) { st.isBool, st.kind = true, yamlBool }
func intSetting(st *setting)  { st.kind = yamlInt }
func listSetting(st *setting) { st.kind = yamlList }
func secretSetting(st *setting) {
	st.secret = true
}
func cliOnly(st *setting) { st.noFile = true }

func (s *settings) lookup(name string) *setting {
	for _, st := range s.list {
		if st.name == name {
			return st
		}
	}
	return nil
}

// flagValue records a flag's raw value; parsing happens in load.
type flagValue struct {
	st  *setting
	raw string
	set bool
}

func (v *flagValue) String() string     { return v.raw }
func (v *flagValue) Set(s string) error { v.raw, v.set = s, true; return nil }
func (v *flagValue) IsBoolFlag() bool   { return v.st != nil && v.st.isBool }

// load resolves every setting from args (without the program name), getenv
// and the --config file, and applies the winning raw values. Every bad value
// is reported, joined into one error.
func (s *settings) load(args []string, getenv func(string) string) error {
	fs := flag.NewFlagSet(s.cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	values := make(map[string]*flagValue, len(s.list))
	for _, st := range s.list {
		v := &flagValue{st: st}
		values[st.name] = v
		fs.Var(v, st.name, st.usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ErrHelp
		}
		return fmt.Errorf("%w (see --help)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: settings are flags, e.g. --listen=127.0.0.1:8080 (see --help)", fs.Arg(0))
	}

	for _, st := range s.list {
		switch v := values[st.name]; {
		case v.set:
			st.raw, st.src, st.isSet = v.raw, source{kind: fromFlag}, true
		case getenv(EnvName(st.name)) != "":
			st.raw, st.src, st.isSet = getenv(EnvName(st.name)), source{kind: fromEnv, name: EnvName(st.name)}, true
		default:
			st.raw, st.src = st.def, source{kind: fromDefault}
		}
	}

	var errs []error
	if cfg := s.lookup("config"); cfg != nil && cfg.isSet {
		if cfg.raw == "" {
			return settingError(cfg, cfg.src, "empty path")
		}
		file, err := readYAMLFile(cfg.raw)
		if err != nil {
			return settingError(cfg, cfg.src, err.Error())
		}
		for _, kv := range file {
			src := source{kind: fromFile, name: cfg.raw, line: kv.line}
			st := s.lookup(kv.key)
			if st == nil || st.noFile {
				errs = append(errs, fmt.Errorf("unknown setting %q (from %s)", kv.key, src))
				continue
			}
			raw, set, err := yamlRaw(st, kv.value)
			if err != nil {
				errs = append(errs, settingError(st, src, err.Error()))
				continue
			}
			if set && st.src.kind < fromFile {
				st.raw, st.src, st.isSet = raw, src, true
			}
		}
	}

	for _, st := range s.list {
		if !st.isSet && st.def == "" {
			continue // zero value
		}
		if err := st.apply(st.raw); err != nil {
			errs = append(errs, settingError(st, st.src, err.Error()))
		}
	}
	return errors.Join(errs...)
}

// yamlEntry is one top-level key of a YAML settings file.
type yamlEntry struct {
	key   string
	value *yaml.Node
	line  int
}

// readYAMLFile reads a mapping of setting names to values, in file order.
// Duplicate keys are an error.
func readYAMLFile(path string) ([]yamlEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseYAML(path, data)
}

func parseYAML(path string, data []byte) ([]yamlEntry, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Kind == 0 { // empty file
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s line %d: want a mapping of setting names to values, got %s", path, root.Line, nodeKind(root))
	}
	var out []yamlEntry
	seen := make(map[string]int)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s line %d: a setting name must be a string, got %s", path, k.Line, nodeKind(k))
		}
		if first, dup := seen[k.Value]; dup {
			return nil, fmt.Errorf("%s line %d: %q is already set on line %d", path, k.Line, k.Value, first)
		}
		seen[k.Value] = k.Line
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		out = append(out, yamlEntry{key: k.Value, value: v, line: k.Line})
	}
	return out, nil
}

// yamlRaw turns a YAML value into the setting's raw text. A null value
// (`key:` or `key: ~`) leaves the setting unset.
func yamlRaw(st *setting, n *yaml.Node) (raw string, set bool, err error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "", false, nil
		}
		switch {
		case st.kind == yamlBool && n.Tag != "!!bool":
			return "", false, fmt.Errorf("want true or false, got %s", scalarDesc(st, n))
		case st.kind == yamlInt && n.Tag != "!!int":
			return "", false, fmt.Errorf("want an integer, got %s", scalarDesc(st, n))
		}
		return n.Value, true, nil
	case yaml.SequenceNode:
		if st.kind != yamlList {
			return "", false, fmt.Errorf("want a single value, got a list")
		}
		parts := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind == yaml.AliasNode {
				item = item.Alias
			}
			if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
				return "", false, fmt.Errorf("want a list of values, got %s in it (line %d)", nodeKind(item), item.Line)
			}
			parts = append(parts, item.Value)
		}
		return strings.Join(parts, ","), true, nil
	default:
		if st.kind == yamlList {
			return "", false, fmt.Errorf("want a value or a list, got %s", nodeKind(n))
		}
		return "", false, fmt.Errorf("want a single value, got %s", nodeKind(n))
	}
}

func scalarDesc(st *setting, n *yaml.Node) string {
	kind := strings.TrimPrefix(n.ShortTag(), "!!")
	switch kind {
	case "str":
		kind = "string"
	case "int":
		kind = "integer"
	case "bool":
		kind = "boolean"
	}
	if st.secret {
		return "a " + kind
	}
	return fmt.Sprintf("%s %q", kind, n.Value)
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return "a value"
	default:
		return "an alias"
	}
}

// usage lists every setting with its environment variable and default.
func (s *settings) usage(summary string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s [flags]\n\n%s\n\n", s.cmd, summary)
	b.WriteString("Every flag can also be set by its environment variable or, under the flag's\n")
	b.WriteString("name, in the --config YAML file; precedence is flag > environment > file > default.\n\n")
	b.WriteString("Flags:\n")
	for _, st := range s.list {
		switch {
		case st.isBool:
			fmt.Fprintf(&b, "  --%s[=%s]\n", st.name, st.arg)
		default:
			fmt.Fprintf(&b, "  --%s %s\n", st.name, st.arg)
		}
		fmt.Fprintf(&b, "        %s\n", st.usage)
		extra := "env " + EnvName(st.name)
		if st.noFile {
			extra = "not in the file; " + extra
		}
		if st.def != "" && !st.secret {
			extra = fmt.Sprintf("default %s; %s", st.def, extra)
		}
		fmt.Fprintf(&b, "        (%s)\n", extra)
	}
	return b.String()
}
