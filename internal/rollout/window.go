package rollout

import (
	"encoding/json"
	"fmt"
	"time"
)

// Interval is an absolute maintenance window: new tasks may start in [Start, End).
type Interval struct {
	Start, End time.Time
}

// Weekly is a maintenance window that recurs every week: it opens on Day at Start (time of day)
// in Location and stays open for Duration. A window may run past midnight and into the next
// week (Saturday 22:00 for 6h).
type Weekly struct {
	Day      time.Weekday
	Start    time.Duration // since local midnight, in [0, 24h)
	Duration time.Duration // in (0, 7×24h]
	Location *time.Location
}

// Windows is a rollout's schedule. With neither intervals nor weekly windows the rollout may start
// tasks at any time.
type Windows struct {
	Intervals []Interval
	Weekly    []Weekly
}

// Always reports whether w places no limit on when tasks start.
func (w Windows) Always() bool { return len(w.Intervals) == 0 && len(w.Weekly) == 0 }

// Validate refuses windows that cannot open: an empty or inverted interval, a weekly window
// without a time zone or with an impossible time, and a schedule whose every window lies before
// now.
func (w Windows) Validate(now time.Time) []Violation {
	var out []Violation
	for i, iv := range w.Intervals {
		if !iv.End.After(iv.Start) {
			out = append(out, Violation{Field: fmt.Sprintf("windows.intervals[%d]", i), Reason: "end must be after start"})
		}
	}
	for i, wk := range w.Weekly {
		field := fmt.Sprintf("windows.weekly[%d]", i)
		switch {
		case wk.Location == nil:
			out = append(out, Violation{Field: field + ".time_zone", Reason: "a weekly window needs a time zone"})
		case wk.Day < time.Sunday || wk.Day > time.Saturday:
			out = append(out, Violation{Field: field + ".day", Reason: "not a day of the week"})
		case wk.Start < 0 || wk.Start >= 24*time.Hour:
			out = append(out, Violation{Field: field + ".start", Reason: "must be a time of day in [00:00, 24:00)"})
		case wk.Duration <= 0 || wk.Duration > 7*24*time.Hour:
			out = append(out, Violation{Field: field + ".duration", Reason: "must be more than 0 and at most a week"})
		}
	}
	if len(out) == 0 && !w.Always() {
		if _, _, ok := w.Next(now); !ok {
			out = append(out, Violation{Field: "windows", Reason: "every window is in the past"})
		}
	}
	return out
}

// Open reports whether a new task may start at t.
func (w Windows) Open(t time.Time) bool {
	if w.Always() {
		return true
	}
	start, _, ok := w.Next(t)
	return ok && !start.After(t)
}

// Next returns the window that is open at t, or else the first one to open after t: its start
// (t itself when a window is open) and its end. ok is false when no window opens at or after t.
// Overlapping or adjacent windows merge into one.
func (w Windows) Next(t time.Time) (start, end time.Time, ok bool) {
	if w.Always() {
		return t, time.Time{}, true
	}
	// Candidates: every absolute interval, and each weekly window's occurrences in the week
	// before t through the week after (an occurrence may have opened before t and still be open).
	var spans []Interval
	for _, iv := range w.Intervals {
		if iv.End.After(t) {
			spans = append(spans, iv)
		}
	}
	for _, wk := range w.Weekly {
		if wk.Location == nil || wk.Duration <= 0 {
			continue
		}
		local := t.In(wk.Location)
		midnight := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, wk.Location)
		back := (int(local.Weekday()) - int(wk.Day) + 7) % 7
		for weeks := -1; weeks <= 1; weeks++ {
			day := midnight.AddDate(0, 0, -back+7*weeks)
			// Start is a wall-clock time: build it with Date so a DST change between midnight
			// and the start keeps it at the local hour the operator wrote.
			h, m, sec := int(wk.Start/time.Hour), int(wk.Start%time.Hour/time.Minute), int(wk.Start%time.Minute/time.Second)
			s := time.Date(day.Year(), day.Month(), day.Day(), h, m, sec, 0, wk.Location)
			if e := s.Add(wk.Duration); e.After(t) {
				spans = append(spans, Interval{Start: s, End: e})
			}
		}
	}
	if len(spans) == 0 {
		return time.Time{}, time.Time{}, false
	}
	// The earliest-starting span, extended through every span that overlaps or touches it.
	first := spans[0]
	for _, s := range spans[1:] {
		if s.Start.Before(first.Start) {
			first = s
		}
	}
	for grown := true; grown; {
		grown = false
		for _, s := range spans {
			if !s.Start.After(first.End) && s.End.After(first.End) {
				first.End, grown = s.End, true
			}
		}
	}
	if first.Start.Before(t) {
		first.Start = t
	}
	return first.Start, first.End, true
}

// weeklyJSON is the stored form of a Weekly: its time zone by name, since a *time.Location has
// no encoding of its own.
type weeklyJSON struct {
	Day      time.Weekday  `json:"day"`
	Start    time.Duration `json:"start"`
	Duration time.Duration `json:"duration"`
	TimeZone string        `json:"time_zone"`
}

// MarshalJSON stores the window with its time zone's name.
func (w Weekly) MarshalJSON() ([]byte, error) {
	j := weeklyJSON{Day: w.Day, Start: w.Start, Duration: w.Duration}
	if w.Location != nil {
		j.TimeZone = w.Location.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads a window stored by MarshalJSON, loading its time zone by name.
func (w *Weekly) UnmarshalJSON(b []byte) error {
	var j weeklyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*w = Weekly{Day: j.Day, Start: j.Start, Duration: j.Duration}
	if j.TimeZone != "" {
		loc, err := time.LoadLocation(j.TimeZone)
		if err != nil {
			return fmt.Errorf("weekly window: time zone %q: %w", j.TimeZone, err)
		}
		w.Location = loc
	}
	return nil
}
