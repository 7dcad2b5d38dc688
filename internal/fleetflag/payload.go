package fleetflag

import (
	"bytes"
	"encoding/json"
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

// Payload is the sh.hollow.flasher.task attribute. Fields Flasher does not know are kept as
// they are when the attribute is written back.
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
	// Force reinstalls or downgrades in set and resolve modes.
	Force bool `json:"force,omitempty"`

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

	extra map[string]json.RawMessage
}

// Item is one firmware of a payload.
type Item struct {
	Component   string   `json:"component"`
	Version     string   `json:"version"`
	URL         string   `json:"updateFileURL,omitempty"`
	Checksum    string   `json:"updateFileChecksum,omitempty"`
	Force       bool     `json:"force,omitempty"`
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
		return fmt.Errorf("the Firmware field is neither a list nor an object keyed by component: %w", err)
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

// known are the JSON keys of Payload's fields, so the rest can be kept.
var known = map[string]bool{
	"method": true, "status": true, "priority": true, "requester": true, "firmwareSet": true,
	"Firmware": true, "force": true, "worker": true, "taskID": true, "requestID": true,
	"failureCode": true, "reason": true, "queuedAt": true, "startedAt": true, "finishedAt": true,
	"updatedAt": true,
}

// ParsePayload decodes an attribute's data.
func ParsePayload(data []byte) (*Payload, error) {
	p := &Payload{}
	if err := json.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("%s attribute: %w", Namespace, err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, fmt.Errorf("%s attribute: %w", Namespace, err)
	}
	for k, v := range all {
		if !known[k] {
			if p.extra == nil {
				p.extra = map[string]json.RawMessage{}
			}
			p.extra[k] = v
		}
	}
	p.Status = strings.ToLower(strings.TrimSpace(p.Status))
	if p.Status == "sucess" {
		p.Status = StatusSuccess
	}
	return p, nil
}

// Marshal encodes the payload with the fields it did not know, and the namespace.
func (p *Payload) Marshal() (json.RawMessage, error) {
	type plain Payload
	b, err := json.Marshal((*plain)(p))
	if err != nil {
		return nil, err
	}
	if len(p.extra) == 0 {
		return b, nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for k, v := range p.extra {
		all[k] = v
	}
	return json.Marshal(all)
}
