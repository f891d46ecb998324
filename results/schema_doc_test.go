package results_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/loadcap/loadcap/results"
)

// docs/result-schema.md names every field of the result document, so the
// page users read cannot fall behind the types.
func TestResultSchemaPageNamesEveryField(t *testing.T) {
	b, err := os.ReadFile("../docs/result-schema.md")
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type, string)
	walk = func(ty reflect.Type, path string) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || ty.PkgPath() != reflect.TypeOf(results.Document{}).PkgPath() || seen[ty] {
			return
		}
		seen[ty] = true
		if !strings.Contains(page, "## `"+ty.Name()+"`") {
			t.Errorf("docs/result-schema.md has no section for %s (%s)", ty.Name(), path)
		}
		for i := 0; i < ty.NumField(); i++ {
			f := ty.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if !strings.Contains(page, "| `"+name+"` |") {
				t.Errorf("docs/result-schema.md does not describe %s.%s (json %q)", ty.Name(), f.Name, name)
			}
			walk(f.Type, path+"."+name)
		}
	}
	walk(reflect.TypeOf(results.Document{}), "document")
	if len(seen) < 10 {
		t.Fatalf("walked %d types: the walk is broken", len(seen))
	}
}
