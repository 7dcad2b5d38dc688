// Package config loads a daemon's typed configuration from, in increasing precedence, defaults,
// FLASHER_* environment variables, a YAML file and command-line flags. A struct field takes part
// when it has a `flag` tag; its YAML key and environment name derive from it (flag "grpc-listen"
// → YAML "grpc_listen", env FLASHER_GRPC_LISTEN). It knows nothing of what the fields mean.
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

// Load fills cfg (a pointer to a struct holding its defaults) from env, the YAML file named by
// the -config flag or FLASHER_CONFIG, and args. It returns the remaining positional arguments.
func Load(name string, cfg any, args []string, stderr io.Writer) ([]string, error) {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil, errors.New("config: Load needs a pointer to a struct")
	}
	fields := collect(v.Elem())

	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", os.Getenv("FLASHER_CONFIG"), "YAML configuration file (env FLASHER_CONFIG)")
	for _, f := range fields {
		fs.Var(&flagValue{f: f}, f.flag, fmt.Sprintf("%s (env %s, yaml %s)", f.usage, f.env, f.yaml))
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage of %s:\nPrecedence: flags > YAML file > FLASHER_* environment > defaults.\n", name)
		fs.PrintDefaults()
	}
	// Defaults are shown by PrintDefaults through flagValue.String before anything is applied.
	for _, f := range fields {
		f.def = f.get()
	}

	// 1. environment
	for _, f := range fields {
		if s, ok := os.LookupEnv(f.env); ok {
			if err := f.set(s); err != nil {
				return nil, fmt.Errorf("%s: %w", f.env, err)
			}
		}
	}
	// Parse flags into a scratch copy first, only to find the config file and the set flags.
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	set := map[string]string{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = fl.Value.String() })
	// flag values were written directly; re-apply in precedence order: env (done) < file < flags.
	if *configFile != "" {
		if err := loadFile(*configFile, fields); err != nil {
			return nil, err
		}
	}
	for _, f := range fields {
		if s, ok := set[f.flag]; ok {
			if err := f.set(s); err != nil {
				return nil, fmt.Errorf("-%s: %w", f.flag, err)
			}
		}
	}
	return fs.Args(), nil
}

func loadFile(path string, fields []*field) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var raw map[string]yaml.Node
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	byKey := map[string]*field{}
	for _, f := range fields {
		byKey[f.yaml] = f
	}
	for k, node := range raw {
		f, ok := byKey[k]
		if !ok {
			return fmt.Errorf("config file %s:%d: unknown key %q", path, node.Line, k)
		}
		var s string
		if node.Kind == yaml.SequenceNode {
			var items []string
			if err := node.Decode(&items); err != nil {
				return fmt.Errorf("config file %s:%d: %s: %w", path, node.Line, k, err)
			}
			s = strings.Join(items, ",")
		} else if err := node.Decode(&s); err != nil {
			return fmt.Errorf("config file %s:%d: %s: %w", path, node.Line, k, err)
		}
		if err := f.set(s); err != nil {
			return fmt.Errorf("config file %s:%d: %s: %w", path, node.Line, k, err)
		}
	}
	return nil
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

// Set validates the flag's syntax; the value itself is applied after the file, in Load.
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
