package ctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	flasherv1 "github.com/flasher-dev/flasher/gen/flasher/v1"
)

// jsonOptions fix the JSON field names to the proto names and emit every field, so scripts
// see a stable schema whether or not a field is set.
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// marshalJSON renders m as protojson, indented or on one line. protojson varies its
// whitespace on purpose; compacting first makes the output byte-stable.
func marshalJSON(m proto.Message, indent bool) ([]byte, error) {
	raw, err := jsonOptions.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return nil, err
	}
	if !indent {
		compact.WriteByte('\n')
		return compact.Bytes(), nil
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// marshalYAML renders m as the YAML of its JSON form: the same field names and order.
func marshalYAML(m proto.Message) ([]byte, error) {
	j, err := marshalJSON(m, false)
	if err != nil {
		return nil, err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(j, &n); err != nil {
		return nil, err
	}
	plainStyle(&n)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	return out.Bytes(), enc.Close()
}

// plainStyle drops the flow and quoting styles JSON input gives nodes, so the YAML reads as
// block YAML; the encoder still quotes strings that would otherwise change type.
func plainStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		plainStyle(c)
	}
}

// emit writes m in the configured format; table draws it for people.
func (a *app) emit(m proto.Message, table func(w io.Writer) error) error {
	switch a.cfg.Output {
	case "json":
		b, err := marshalJSON(m, true)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(b)
		return err
	case "yaml":
		b, err := marshalYAML(m)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(b)
		return err
	}
	return table(a.stdout)
}

// emitLine writes one message of a stream: JSON on one line (NDJSON), or a YAML document.
func (a *app) emitLine(m proto.Message) error {
	if a.cfg.Output == "yaml" {
		b, err := marshalYAML(m)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "---\n%s", b)
		return err
	}
	b, err := marshalJSON(m, false)
	if err != nil {
		return err
	}
	_, err = a.stdout.Write(b)
	return err
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// row writes tab-separated cells, "-" for empty ones, so columns never collapse. A cell of
// several lines (a tool's multi-line message) continues on rows of its own below, in its
// column, so the table stays aligned; tabs inside a cell become spaces.
func row(w io.Writer, cells ...string) {
	lines := make([][]string, len(cells))
	n := 1
	for i, c := range cells {
		c = strings.ReplaceAll(strings.TrimRight(c, "\r\n"), "\t", " ")
		if c == "" {
			c = "-"
		}
		lines[i] = strings.Split(strings.ReplaceAll(c, "\r\n", "\n"), "\n")
		n = max(n, len(lines[i]))
	}
	out := make([]string, len(cells))
	for l := range n {
		for i := range cells {
			out[i] = ""
			if l < len(lines[i]) {
				out[i] = strings.TrimRight(lines[i][l], "\r")
			}
		}
		fmt.Fprintln(w, strings.Join(out, "\t"))
	}
}

func fmtTime(t *timestamppb.Timestamp) string {
	if t == nil || !t.IsValid() || t.AsTime().IsZero() {
		return ""
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

// fmtDuration rounds for reading: milliseconds under a second, tenths under a minute, seconds above.
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func methodName(m flasherv1.Method) string {
	switch m {
	case flasherv1.Method_METHOD_OUT_OF_BAND:
		return "out-of-band"
	case flasherv1.Method_METHOD_IN_BAND:
		return "in-band"
	}
	return ""
}

func stateName(s flasherv1.TaskState) string {
	return strings.TrimPrefix(s.String(), "TASK_STATE_")
}

func stepStateName(s flasherv1.StepState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STEP_STATE_"))
}

func actionNames(as []flasherv1.Action) string {
	var out []string
	for _, a := range as {
		out = append(out, strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(a.String(), "ACTION_"), "_", "-")))
	}
	return strings.Join(out, ",")
}

// componentName is "BMC" or "NIC MT2033X00101".
func componentName(component, serial string) string {
	if serial == "" {
		return component
	}
	return component + " " + serial
}

func terminal(s flasherv1.TaskState) bool {
	return s == flasherv1.TaskState_TASK_STATE_SUCCEEDED || s == flasherv1.TaskState_TASK_STATE_FAILED || s == flasherv1.TaskState_TASK_STATE_CANCELLED
}
