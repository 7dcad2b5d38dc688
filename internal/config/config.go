// Package config is the one configuration precedence of every Flasher binary (flasher-server,
// flasher-agent, flasherctl), highest first: command-line flags, FLASHER_* environment
// variables, the YAML config file, built-in defaults (Precedence; docs/configuration.md).
// Resolve applies it to one setting; Load fills a daemon's typed configuration with it. A struct
// field takes part in Load when it has a `flag` tag; its YAML key and environment name derive
// from it (flag "grpc-listen" → YAML "grpc_listen", env FLASHER_GRPC_LISTEN). It knows nothing
// of what the fields mean.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Precedence is the order settings are resolved in, as every binary's -h prints it.
const Precedence = "flags > FLASHER_* environment > YAML config file > defaults"

// Setting is one layer's value of a setting; Set says whether the layer gives one at all.
type Setting[T any] struct {
	Value T
	Set   bool
}

// Of is a layer that gives v.
func Of[T any](v T) Setting[T] { return Setting[T]{Value: v, Set: true} }

// Resolve returns the value of the highest layer that sets it, in Precedence order, else def.
func Resolve[T any](flagValue, env, file Setting[T], def T) T {
	for _, l := range []Setting[T]{flagValue, env, file} {
		if l.Set {
			return l.Value
		}
	}
	return def
}

// Load fills cfg (a pointer to a struct holding its defaults) from args, the environment and
// the YAML file named by the -config flag or FLASHER_CONFIG, in Precedence order. It returns the
// remaining positional arguments.
func Load(name string, cfg any, args []string, stderr io.Writer) ([]string, error) {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil, errors.New("config: Load needs a pointer to a struct")
	}
	fields := collect(v.Elem())

	// Defaults are recorded before the flags are registered: the flag package takes each flag's
	// default text at registration, and -h prints it for every setting that has one.
	for _, f := range fields {
		if !f.v.IsZero() {
			f.def = f.get()
		}
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", os.Getenv("FLASHER_CONFIG"), "YAML configuration file (env FLASHER_CONFIG)")
	for _, f := range fields {
		fs.Var(&flagValue{f: f}, f.flag, fmt.Sprintf("%s (env %s, yaml %s)", f.usage, f.env, f.yaml))
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage of %s:\nPrecedence: %s.\n", name, Precedence)
		fs.PrintDefaults()
	}
	// Flags only record what was given (flagValue.Set); values are applied below.
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	flags := map[string]string{}
	fs.Visit(func(fl *flag.Flag) { flags[fl.Name] = fl.Value.String() })
	var file map[string]fileValue
	if *configFile != "" {
		var err error
		if file, err = loadFile(*configFile, fields); err != nil {
			return nil, err
		}
	}
	for _, f := range fields {
		fv, fok := flags[f.flag]
		ev, eok := os.LookupEnv(f.env)
		yv, yok := file[f.yaml]
		s := Resolve(Setting[string]{fv, fok}, Setting[string]{ev, eok}, Setting[string]{yv.value, yok}, "")
		if !fok && !eok && !yok {
			continue // the default stays
		}
		if err := f.set(s); err != nil {
			switch {
			case fok:
				return nil, fmt.Errorf("-%s: %w", f.flag, err)
			case eok:
				return nil, fmt.Errorf("%s: %w", f.env, err)
			default:
				return nil, fmt.Errorf("config file %s:%d: %s: %w", *configFile, yv.line, f.yaml, err)
			}
		}
	}
	return fs.Args(), nil
}

// fileValue is one key of the config file, as text, with its line for errors.
type fileValue struct {
	value string
	line  int
}

func loadFile(path string, fields []*field) (map[string]fileValue, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]yaml.Node
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	known := map[string]bool{}
	for _, f := range fields {
		known[f.yaml] = true
	}
	out := map[string]fileValue{}
	for k, node := range raw {
		if !known[k] {
			return nil, fmt.Errorf("config file %s:%d: unknown key %q", path, node.Line, k)
		}
		var s string
		if node.Kind == yaml.SequenceNode {
			var items []string
			if err := node.Decode(&items); err != nil {
				return nil, fmt.Errorf("config file %s:%d: %s: %w", path, node.Line, k, err)
			}
			s = strings.Join(items, ",")
		} else if err := node.Decode(&s); err != nil {
			return nil, fmt.Errorf("config file %s:%d: %s: %w", path, node.Line, k, err)
		}
		out[k] = fileValue{value: s, line: node.Line}
	}
	return out, nil
}

type field struct {
	flag, yaml, env, usage, def string
	v                           reflect.Value
}

func collect(v reflect.Value) []*field {
	var out []*field
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name := sf.Tag.Get("flag")
		if name == "" {
			continue
		}
		out = append(out, &field{
			flag:  name,
			yaml:  strings.ReplaceAll(name, "-", "_"),
			env:   "FLASHER_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")),
			usage: sf.Tag.Get("usage"),
			v:     v.Field(i),
		})
	}
	return out
}

func (f *field) get() string {
	switch x := f.v.Interface().(type) {
	case []string:
		return strings.Join(x, ",")
	case time.Duration:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}

func (f *field) set(s string) error {
	switch f.v.Interface().(type) {
	case string:
		f.v.SetString(s)
	case bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		f.v.SetBool(b)
	case int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return err
		}
		f.v.SetInt(int64(n))
	case int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		f.v.SetInt(n)
	case float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		f.v.SetFloat(x)
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.v.SetInt(int64(d))
	case []string:
		var items []string
		for _, it := range strings.Split(s, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		f.v.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("unsupported config field type %s", f.v.Type())
	}
	return nil
}

type flagValue struct{ f *field }

func (fv *flagValue) String() string {
	if fv == nil || fv.f == nil {
		return ""
	}
	return fv.f.def
}

// Set validates the flag's syntax; the value itself is applied in Load, by Resolve.
func (fv *flagValue) Set(s string) error {
	tmp := reflect.New(fv.f.v.Type()).Elem()
	probe := &field{v: tmp}
	if err := probe.set(s); err != nil {
		return err
	}
	fv.f.def = s
	return nil
}

func (fv *flagValue) IsBoolFlag() bool { return fv.f.v.Kind() == reflect.Bool }
