package jsondepth

import (
	"strings"
	"testing"
)

func TestExceedsCountsArraysAndObjectsOutsideStrings(t *testing.T) {
	t.Parallel()
	nested := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	tests := []struct {
		name  string
		data  string
		limit int
		want  bool
	}{
		{"flat", `{"a": 1, "b": [1, 2]}`, 2, false},
		{"at the limit", nested(5), 5, false},
		{"one level over", nested(6), 5, true},
		{"objects", `{"a":{"a":{"a":1}}}`, 2, true},
		{"siblings do not add up", `[[1],[2],[3],{"a":[4]}]`, 3, false},
		{"brackets in strings", `["[[[[{{{{", "\"[[[["]`, 1, false},
		{"an escaped backslash ends the string", `["\\", [[1]]]`, 2, true},
		{"unclosed", strings.Repeat("[", 100), 99, true},
		{"empty", ``, 0, false},
	}
	for _, tt := range tests {
		if got := Exceeds([]byte(tt.data), tt.limit); got != tt.want {
			t.Errorf("%s: Exceeds(%q, %d) = %v, want %v", tt.name, tt.data, tt.limit, got, tt.want)
		}
	}
}
