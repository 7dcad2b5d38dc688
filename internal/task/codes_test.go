package task

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strconv"
	"testing"
)

// TestCatalogueIsComplete: every Code constant of this package is in Catalogue exactly once,
// with a meaning and a known effect.
func TestCatalogueIsComplete(t *testing.T) {
	seen := map[Code]bool{}
	for _, c := range Catalogue {
		if seen[c.Code] {
			t.Errorf("%s is in the catalogue twice", c.Code)
		}
		seen[c.Code] = true
		if c.Meaning == "" {
			t.Errorf("%s has no meaning", c.Code)
		}
		switch c.Effect {
		case EffectNone, EffectPossible, EffectChanged:
		default:
			t.Errorf("%s has effect %q", c.Code, c.Effect)
		}
		if got, ok := c.Code.Info(); !ok || got.Code != c.Code {
			t.Errorf("Info(%s) = %+v, %v", c.Code, got, ok)
		}
	}
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := 0
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Code" {
			return true
		}
		for _, v := range vs.Values {
			lit, ok := v.(*ast.BasicLit)
			if !ok {
				continue
			}
			s, _ := strconv.Unquote(lit.Value)
			declared++
			if !seen[Code(s)] {
				t.Errorf("constant %s is not in the catalogue", s)
			}
		}
		return true
	})
	if declared != len(Catalogue) {
		t.Errorf("%d Code constants, %d catalogue entries", declared, len(Catalogue))
	}
	if _, ok := Code("NO_SUCH_CODE").Info(); ok {
		t.Error("Info found a code that is not in the catalogue")
	}
}

// TestOperationsDocListsEveryCode: docs/operations.md has a table row for every code of the
// catalogue, and no row for a code that is not in it.
func TestOperationsDocListsEveryCode(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[Code]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z][A-Z_]+)` \\|").FindAllSubmatch(doc, -1) {
		rows[Code(m[1])] = true
	}
	for _, c := range Catalogue {
		if !rows[c.Code] {
			t.Errorf("docs/operations.md has no row for %s (%s)", c.Code, c.Meaning)
		}
		delete(rows, c.Code)
	}
	for c := range rows {
		t.Errorf("docs/operations.md lists %s, which is not in the catalogue", c)
	}
}
