// Package jsondepth measures how deeply a JSON text nests arrays and
// objects, without parsing it: a bound checked before a recursive parser
// sees untrusted input.
package jsondepth

// Exceeds reports whether the JSON text data nests arrays and objects more
// than limit levels deep. It counts brackets outside strings and stops at
// the first one too deep; it does not check that data is valid JSON.
func Exceeds(data []byte, limit int) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range data {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString:
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			if depth > limit {
				return true
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return false
}
