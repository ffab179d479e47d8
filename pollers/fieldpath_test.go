package pollers

import "testing"

func TestFieldPathReadsDotsAndBrackets(t *testing.T) {
	t.Parallel()
	doc := `{"id":7,"properties":{"lastmodified":"2020"},"Modified Time":"mt","items":[{"id":"i0"},{"id":"i1"}],
		"a":{"b.c":"dotted","b":{"c":"nested"}},"x*?|#@":"special","@this":"at","it's":"quote","0":{"k":"zero"}}`
	for _, c := range []struct{ path, want string }{
		{"id", "7"},
		{"properties.lastmodified", "2020"},
		{"['Modified Time']", "mt"},
		{`["Modified Time"]`, "mt"},
		{"items[0].id", "i0"},
		{"items[1]['id']", "i1"},
		{`a["b.c"]`, "dotted"},
		{"a.b.c", "nested"},
		{"a['b'].c", "nested"},
		{"x*?|#@", "special"},
		{"@this", "at"},
		{`['it\'s']`, "quote"},
		{"$.properties.lastmodified", "2020"},
		{"$['Modified Time']", "mt"},
		{"0.k", "zero"},
	} {
		p, err := ParseFieldPath(c.path)
		if err != nil {
			t.Errorf("ParseFieldPath(%q): %v", c.path, err)
			continue
		}
		if got := p.Get(doc); got.String() != c.want {
			t.Errorf("Get(%q) [gjson %q] = %q, want %q", c.path, p.GJSON(), got.String(), c.want)
		}
	}
	if p, _ := ParseFieldPath("nope.x"); p.Get(doc).Exists() {
		t.Error("a missing path exists")
	}
	if (FieldPath{}).Get(doc).Exists() {
		t.Error("the zero path read something")
	}
}

func TestParseFieldPathRejectsMalformedPaths(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ path, want string }{
		{"", "empty field path"},
		{"  ", "empty field path"},
		{"a..b", `invalid field path "a..b": empty key at position 3`},
		{".a", `invalid field path ".a": empty key at position 1`},
		{"a.", `invalid field path "a.": ends with '.'`},
		{"a[", `invalid field path "a[": unclosed '[' at position 2`},
		{"a[x]", `invalid field path "a[x]": expected an index or a quoted key in brackets at position 2, got [x]`},
		{"a['x]", `invalid field path "a['x]": unclosed quote at position 3`},
		{"a['x'", `invalid field path "a['x'": expected ']' at position 6`},
		{"a['']", `invalid field path "a['']": empty key at position 2`},
		{"a[0]b", `invalid field path "a[0]b": expected '.' or '[' at position 5`},
		{"$", `invalid field path "$": no field after $`},
	} {
		_, err := ParseFieldPath(c.path)
		if err == nil || err.Error() != c.want {
			t.Errorf("ParseFieldPath(%q) error = %v, want %s", c.path, err, c.want)
		}
	}
}

func TestValuesReadWhatGetReads(t *testing.T) {
	records := []string{
		`{"id": 7, "a": {"b": [10, {"c": "x"}]}, "d": "2024-01-01", "dup": 1, "dup": 2, "k.e\"y": true, "0": "zero"}`,
		`{"a": [1, 2, 3], "id": "s", "nested": {"deep": {"deeper": null}}}`,
		`{}`,
		`{"id": {"not": "scalar"}, "d": ["array"], "a": "string"}`,
		`{"a": {"x": 1}, "a": {"b": [0, {"c": 2}]}, "a": "s"}`,
		`{"a": "s", "a": [1, 2, 3], "d": 1, "d": 2}`,
	}
	paths := []string{"id", "a.b[1].c", "a.b[0]", "a[2]", "d", "dup", `['k.e"y']`, "[0]", "missing", "nested.deep.deeper", "a"}
	for _, rec := range records {
		var fps []FieldPath
		for _, s := range paths {
			p, err := ParseFieldPath(s)
			if err != nil {
				t.Fatal(err)
			}
			fps = append(fps, p)
		}
		// In groups of up to five, as Classify reads them, and all at once
		// (the paths beyond five are read by Get).
		for _, group := range [][]FieldPath{fps[:5], fps[5:10], fps[10:], fps} {
			v := ReadValues(rec, group...)
			for _, p := range group {
				if got, want := v.Get(p), p.Get(rec); got.Raw != want.Raw || got.Exists() != want.Exists() {
					t.Errorf("%s in %s: Values.Get %q (exists %v), Get %q (exists %v)", p, rec, got.Raw, got.Exists(), want.Raw, want.Exists())
				}
			}
		}
	}
}
