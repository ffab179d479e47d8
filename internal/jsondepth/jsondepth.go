// Package jsondepth measures how deeply a JSON text nests arrays and
// objects, without parsing it: a bound checked before a recursive parser
// sees untrusted input.
package jsondepth

import "bytes"

// Exceeds reports whether the JSON text data nests arrays and objects more
// than limit levels deep. It counts brackets outside strings and stops at
// the first one too deep; it does not check that data is valid JSON.
func Exceeds(data []byte, limit int) bool {
	depth := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			end, ok := stringEnd(data, i)
			if !ok {
				return false
			}
			i = end
		case '[', '{':
			depth++
			if depth > limit {
				return true
			}
		case ']', '}':
			depth--
		}
	}
	return false
}

// stringEnd returns the index of the quote that closes the string opened
// at data[open]: the next quote not escaped by an odd run of backslashes.
// ok is false when the string is not closed.
func stringEnd(data []byte, open int) (end int, ok bool) {
	i := open
	for {
		j := bytes.IndexByte(data[i+1:], '"')
		if j < 0 {
			return 0, false
		}
		i += 1 + j
		backslashes := 0
		for k := i - 1; k > open && data[k] == '\\'; k-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return i, true
		}
	}
}
