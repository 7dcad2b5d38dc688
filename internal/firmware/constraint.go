package firmware

import "strings"

// Op is a constraint operator.
type Op string

// Constraint operators. Only OpEq and OpNe are allowed on opaque versions.
const (
	OpEq Op = "="
	OpNe Op = "!="
	OpGe Op = ">="
	OpGt Op = ">"
	OpLe Op = "<="
	OpLt Op = "<"
)

// Term is one operator and version of a constraint.
type Term struct {
	Op      Op
	Version string
}

// Constraint is a conjunction of terms, written ">=2.0" or ">=12.0, <15.0" (comma means and).
// A Constraint from ParseConstraint holds its versions parsed under every scheme, so checks
// during planning parse nothing; it is read-only afterwards and safe to share.
type Constraint struct {
	Raw    string
	Terms  []Term
	parsed map[Scheme][]parsedTerm
}

type parsedTerm struct {
	v   Version
	err error
}

// ParseConstraint parses a constraint, or fails with ErrBadConstraint. It checks syntax only;
// the versions are checked against the required component's scheme by Validate and Check.
func ParseConstraint(s string) (Constraint, error) {
	c := Constraint{Raw: strings.TrimSpace(s)}
	if c.Raw == "" {
		return c, fail(ErrBadConstraint, "empty constraint")
	}
	for _, part := range strings.Split(c.Raw, ",") {
		part = strings.TrimSpace(part)
		var t Term
		for _, op := range []Op{OpGe, OpLe, OpNe, "==", OpEq, OpGt, OpLt} {
			if strings.HasPrefix(part, string(op)) {
				t.Op = op
				if op == "==" {
					t.Op = OpEq
				}
				t.Version = strings.TrimSpace(part[len(op):])
				break
			}
		}
		if t.Op == "" {
			// A bare version means equality, as in fleetdb and FUS records.
			t.Op, t.Version = OpEq, part
		}
		if t.Version == "" {
			return c, fail(ErrBadConstraint, "constraint %q: operator without a version", c.Raw)
		}
		c.Terms = append(c.Terms, t)
	}
	c.parsed = make(map[Scheme][]parsedTerm, len(Schemes))
	for _, sc := range Schemes {
		ts := make([]parsedTerm, len(c.Terms))
		for i, t := range c.Terms {
			ts[i].v, ts[i].err = sc.Parse(t.Version)
		}
		c.parsed[sc] = ts
	}
	return c, nil
}

// Ordered reports whether the constraint needs an order (any operator but = and !=).
func (c Constraint) Ordered() bool {
	for _, t := range c.Terms {
		if t.Op != OpEq && t.Op != OpNe {
			return true
		}
	}
	return false
}

// Check reports whether v satisfies c under v's scheme. It fails with ErrUnorderable when a
// term's version does not parse or an ordering is asked of versions that have none.
func (c Constraint) Check(v Version) (bool, error) {
	pre := c.parsed[v.Scheme]
	for i, t := range c.Terms {
		var w Version
		var err error
		if pre != nil {
			w, err = pre[i].v, pre[i].err
		} else {
			w, err = v.Scheme.Parse(t.Version)
		}
		if err != nil {
			return false, err
		}
		var ok bool
		switch t.Op {
		case OpEq:
			ok = v.Equal(w)
		case OpNe:
			ok = !v.Equal(w)
		default:
			if !v.Scheme.Orderable() {
				return false, fail(ErrUnorderable, "constraint %q orders opaque versions", c.Raw)
			}
			cmp, err := v.Compare(w)
			if err != nil {
				return false, err
			}
			switch t.Op {
			case OpGe:
				ok = cmp >= 0
			case OpGt:
				ok = cmp > 0
			case OpLe:
				ok = cmp <= 0
			case OpLt:
				ok = cmp < 0
			}
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// Validate checks that every term's version parses under s and that s allows the operators.
func (c Constraint) Validate(s Scheme) error {
	if !s.Orderable() && c.Ordered() {
		return fail(ErrUnorderable, "constraint %q orders versions of an opaque scheme", c.Raw)
	}
	for _, t := range c.Terms {
		if _, err := s.Parse(t.Version); err != nil {
			return err
		}
	}
	return nil
}

func (c Constraint) String() string { return c.Raw }
