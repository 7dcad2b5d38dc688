package fleetflag

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Namespace is the server attribute namespace operators flag servers with.
const Namespace = "sh.hollow.flasher.task"

// Attribute statuses. An empty status asks for work; "sucess" (the v0.1 design's spelling) is
// read as success.
const (
	StatusRequested = ""
	StatusQueued    = "queued"
	StatusActive    = "active"
	StatusSuccess   = "success"
	StatusFailed    = "failed"
)

// Keys Flasher writes. Everything else in the attribute belongs to the operator and is written
// back byte for byte.
const (
	keyStatus      = "status"
	keyWorker      = "worker"
	keyTaskID      = "taskID"
	keyRequestID   = "requestID"
	keyFailureCode = "failureCode"
	keyReason      = "reason"
	keyQueuedAt    = "queuedAt"
	keyStartedAt   = "startedAt"
	keyFinishedAt  = "finishedAt"
	keyUpdatedAt   = "updatedAt"
	// keyResolved records which operator-shaped fields (firmwareSet, Firmware) Flasher filled
	// in set and resolve modes, with a digest of what it wrote, so that a re-flag of the same
	// attribute asks for the same mode again instead of an explicit install of the last result.
	keyResolved = "resolved"
	// keyRequest holds an attribute's original data when it was not a JSON object.
	keyRequest = "request"

	keyFirmware    = "Firmware"
	keyFirmwareSet = "firmwareSet"
)

// flasherKeys are the keys Flasher owns: a new request clears them.
var flasherKeys = []string{keyStatus, keyWorker, keyTaskID, keyRequestID, keyFailureCode, keyReason,
	keyQueuedAt, keyStartedAt, keyFinishedAt, keyUpdatedAt, keyResolved}

// Payload is the sh.hollow.flasher.task attribute: a typed view of its data, which is kept
// whole (Raw) so that a write-back changes only Flasher's keys.
type Payload struct {
	Method    string `json:"method,omitempty"` // "out-of-band" (default) or "in-band"
	Status    string `json:"status"`
	Priority  int    `json:"priority"` // 0 to 3, 3 highest
	Requester string `json:"requester,omitempty"`
	// FirmwareSet names a set (PredefinedFirmwareSet); filled by Flasher in resolve mode.
	FirmwareSet string `json:"firmwareSet,omitempty"`
	// Firmware lists explicit firmware (PredefinedFirmware); filled by Flasher from the plan
	// in the other modes. Read as a list or as an object keyed by component.
	Firmware Items `json:"Firmware,omitempty"`
	// Force allows downgrades and unorderable changes in set and resolve modes.
	Force bool `json:"force,omitempty"`
	// Reinstall reflashes members already at their version in set and resolve modes.
	Reinstall bool `json:"reinstall,omitempty"`

	// Written by Flasher.
	Worker      string     `json:"worker,omitempty"`
	TaskID      string     `json:"taskID,omitempty"`
	RequestID   string     `json:"requestID,omitempty"`
	FailureCode string     `json:"failureCode,omitempty"`
	Reason      string     `json:"reason,omitempty"`
	QueuedAt    *time.Time `json:"queuedAt,omitempty"`
	StartedAt   *time.Time `json:"startedAt,omitempty"`
	FinishedAt  *time.Time `json:"finishedAt,omitempty"`
	UpdatedAt   *time.Time `json:"updatedAt,omitempty"`

	// HasStatus is false when the attribute has no status key at all.
	HasStatus bool `json:"-"`
	// Invalid names the first field that does not decode (`priority: want a number ...`);
	// the request it belongs to cannot be run.
	Invalid error `json:"-"`

	raw map[string]json.RawMessage
}

// Item is one firmware of a payload.
type Item struct {
	Component   string   `json:"component"`
	Version     string   `json:"version"`
	URL         string   `json:"updateFileURL,omitempty"`
	Checksum    string   `json:"updateFileChecksum,omitempty"`
	Force       bool     `json:"force,omitempty"`
	Reinstall   bool     `json:"reinstall,omitempty"`
	PreActions  []string `json:"preActions,omitempty"`
	PostActions []string `json:"postActions,omitempty"`
}

// Items is a payload's firmware list.
type Items []Item

// UnmarshalJSON accepts a list of items or an object keyed by component ({"bmc": {...}}).
func (it *Items) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*it = nil
		return nil
	case len(b) > 0 && b[0] == '[':
		var l []Item
		if err := json.Unmarshal(b, &l); err != nil {
			return err
		}
		*it = l
		return nil
	}
	var m map[string]Item
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("neither a list nor an object keyed by component: %w", err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(Items, 0, len(m))
	for _, k := range keys {
		item := m[k]
		if item.Component == "" {
			item.Component = k
		}
		out = append(out, item)
	}
	*it = out
	return nil
}

// ErrNotObject is returned for attribute data that is not a JSON object.
var ErrNotObject = errors.New("the attribute data is not a JSON object")

// ParsePayload decodes an attribute's data. It fails only when the data is not a JSON object;
// a field of the wrong type is reported in Invalid, naming the field, and the fields that
// decode are still filled.
func ParsePayload(data []byte) (*Payload, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil || raw == nil {
		return nil, fmt.Errorf("%s attribute: %w", Namespace, ErrNotObject)
	}
	p := &Payload{raw: raw}
	fields := []struct {
		key  string
		into any
		want string
	}{
		{keyStatus, &p.Status, "a string"},
		{"method", &p.Method, "a string, out-of-band or in-band"},
		{"priority", &p.Priority, "an integer 0 to 3"},
		{"requester", &p.Requester, "a string"},
		{keyFirmwareSet, &p.FirmwareSet, "a string"},
		{keyFirmware, &p.Firmware, "a list of firmware, or an object keyed by component"},
		{"force", &p.Force, "true or false"},
		{"reinstall", &p.Reinstall, "true or false"},
		{keyWorker, &p.Worker, "a string"},
		{keyTaskID, &p.TaskID, "a string"},
		{keyRequestID, &p.RequestID, "a string"},
		{keyFailureCode, &p.FailureCode, "a string"},
		{keyReason, &p.Reason, "a string"},
		{keyQueuedAt, &p.QueuedAt, "an RFC 3339 time"},
		{keyStartedAt, &p.StartedAt, "an RFC 3339 time"},
		{keyFinishedAt, &p.FinishedAt, "an RFC 3339 time"},
		{keyUpdatedAt, &p.UpdatedAt, "an RFC 3339 time"},
	}
	for _, f := range fields {
		v, ok := raw[f.key]
		if !ok {
			continue
		}
		if err := json.Unmarshal(v, f.into); err != nil && p.Invalid == nil {
			p.Invalid = fieldError(f.key, f.want, v, err)
		}
	}
	_, p.HasStatus = raw[keyStatus]
	p.Status = strings.ToLower(strings.TrimSpace(p.Status))
	if p.Status == "sucess" {
		p.Status = StatusSuccess
	}
	return p, nil
}

// fieldError names the field, what it must be, and what it is.
func fieldError(key, want string, v json.RawMessage, err error) error {
	got := strings.TrimSpace(string(v))
	if len(got) > 60 {
		got = got[:60] + "..."
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" && !strings.EqualFold(te.Field, key) {
		// inside a firmware item: name the item field too
		return fmt.Errorf("%s: field %s is a JSON %s, want %s", key, te.Field, te.Value, te.Type)
	}
	return fmt.Errorf("%s: want %s, got %s", key, want, got)
}

// request returns the operator's request: the attribute without Flasher's keys, and without
// the firmwareSet/Firmware Flasher filled in, unless the operator has changed them since.
func (p *Payload) request() map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(p.raw))
	for k, v := range p.raw {
		out[k] = v
	}
	for _, k := range flasherKeys {
		delete(out, k)
	}
	if fields, ok := p.resolvedFields(); ok {
		for _, k := range fields {
			delete(out, k)
		}
	}
	return out
}

// resolved is the value of keyResolved.
type resolved struct {
	Fields []string `json:"fields"`
	Digest string   `json:"digest"`
}

// resolvedFields returns the fields Flasher filled, when they still hold what it wrote.
func (p *Payload) resolvedFields() ([]string, bool) {
	var r resolved
	if v, ok := p.raw[keyResolved]; !ok || json.Unmarshal(v, &r) != nil || len(r.Fields) == 0 {
		return nil, false
	}
	return r.Fields, digest(p.raw, r.Fields) == r.Digest
}

// digest is a stable hash of the named fields' values.
func digest(raw map[string]json.RawMessage, fields []string) string {
	h := sha256.New()
	for _, k := range fields {
		fmt.Fprintf(h, "%s\x00%s\x00", k, canonical(raw[k]))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// canonical re-encodes JSON with sorted keys and no spacing, so equal values compare equal
// whatever fleetdb or the operator did to the formatting.
func canonical(v json.RawMessage) string {
	if len(v) == 0 {
		return ""
	}
	var x any
	if json.Unmarshal(v, &x) != nil {
		return string(v)
	}
	b, _ := json.Marshal(x)
	return string(b)
}

// requestPayload decodes the operator's request (see request) into a Payload.
func (p *Payload) requestPayload() *Payload {
	b, _ := json.Marshal(p.request())
	q, err := ParsePayload(b)
	if err != nil {
		return &Payload{}
	}
	return q
}

// edit is a change to Flasher's keys of an attribute.
type edit struct {
	set   map[string]any
	clear []string
}

// apply returns the attribute data with the edit applied; the operator's keys are kept as
// they were.
func (p *Payload) apply(e edit) (json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(p.raw)+len(e.set))
	for k, v := range p.raw {
		out[k] = v
	}
	for _, k := range e.clear {
		delete(out, k)
	}
	keys := make([]string, 0, len(e.set))
	for k := range e.set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := e.set[k]
		if v == nil {
			delete(out, k)
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("fleetflag: encode %s: %w", k, err)
		}
		out[k] = b
	}
	return json.Marshal(out)
}

// sameIgnoringUpdatedAt reports whether two attribute data differ only in updatedAt.
func sameIgnoringUpdatedAt(a, b json.RawMessage) bool {
	var x, y map[string]json.RawMessage
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	delete(x, keyUpdatedAt)
	delete(y, keyUpdatedAt)
	if len(x) != len(y) {
		return false
	}
	for k, v := range x {
		w, ok := y[k]
		if !ok || canonical(v) != canonical(w) {
			return false
		}
	}
	return true
}
