// Package jsonscan checks a JSON text in one pass, without recursion: it
// validates it (as encoding/json.Valid does), bounds how deeply it nests
// arrays and objects, and locates the values at its top (the elements of a
// top-level array; the members of a top-level object and the elements of
// those that are arrays) so that they can be sliced out without parsing the
// text again.
package jsonscan

import (
	"errors"
	"math/bits"
)

var (
	// ErrSyntax is returned for a text that is not valid JSON.
	ErrSyntax = errors.New("invalid JSON")
	// ErrTooDeep is returned for a text that nests arrays and objects
	// deeper than the limit given to Scan.
	ErrTooDeep = errors.New("JSON nested too deeply")
)

// Span locates a piece of the scanned text: data[Start:End].
type Span struct{ Start, End int }

// Member is a member of a top-level object.
type Member struct {
	Key      Span   // the key between its quotes, escapes as written
	Value    Span   // the value, without whitespace
	Elements []Span // the value's elements when it is an array
}

// Doc is what Scan located in a JSON text.
type Doc struct {
	Root     Span     // the top-level value, without whitespace
	Elements []Span   // when Root is an array: its elements
	Members  []Member // when Root is an object: its members, in order
}

// Scan reads data, a JSON text, in one pass. It stops at the first fault:
// ErrSyntax where data stops being valid JSON, ErrTooDeep at the first
// array or object nested more than maxDepth levels deep.
func Scan(data []byte, maxDepth int) (Doc, error) {
	var (
		doc    Doc
		elems  []Span // the root array's elements, or the members' arrays'
		stack  = make([]byte, 0, 64)
		starts [3]int // where the open value at depths 0, 1 and 2 starts
		key    Span   // the key of the root member being read
		first  int    // index in elems of the root member's first element
		ok     bool
	)
	i := skipSpace(data, 0)
	for {
		// A value starts at data[i].
		if i == len(data) {
			return doc, ErrSyntax
		}
		depth := len(stack)
		if depth < len(starts) {
			starts[depth] = i
			if depth == 1 {
				first = len(elems)
			}
		}
		switch c := data[i]; c {
		case '{', '[':
			if depth >= maxDepth {
				return doc, ErrTooDeep
			}
			stack = append(stack, c)
			i = skipSpace(data, i+1)
			if i < len(data) && data[i] == c+2 { // '}' or ']'
				i, ok = i+1, true
				stack = stack[:depth]
				break
			}
			if c == '{' {
				if i, ok = memberKey(data, i, depth == 0, &key); !ok {
					return doc, ErrSyntax
				}
			}
			continue
		case '"':
			i, _, ok = SkipString(data, i)
		case 't':
			i, ok = scanLiteral(data, i, "true")
		case 'f':
			i, ok = scanLiteral(data, i, "false")
		case 'n':
			i, ok = scanLiteral(data, i, "null")
		default:
			i, ok = scanNumber(data, i)
		}
		if !ok {
			return doc, ErrSyntax
		}
		// The value ended at data[i]; so may the containers it ends.
		for {
			depth := len(stack)
			if depth <= 2 {
				switch {
				case depth == 0:
					doc.Root = Span{starts[0], i}
					if skipSpace(data, i) != len(data) {
						return doc, ErrSyntax
					}
					if data[starts[0]] == '[' {
						doc.Elements = elems
					}
					return doc, nil
				case depth == 1 && stack[0] == '[':
					elems = append(elems, Span{starts[1], i})
				case depth == 1:
					m := Member{Key: key, Value: Span{starts[1], i}}
					if data[starts[1]] == '[' {
						m.Elements = elems[first:len(elems):len(elems)]
					}
					doc.Members = append(doc.Members, m)
				case stack[0] == '{' && stack[1] == '[':
					elems = append(elems, Span{starts[2], i})
				}
			}
			i = skipSpace(data, i)
			if i == len(data) {
				return doc, ErrSyntax
			}
			open := stack[depth-1]
			if data[i] == ',' {
				i = skipSpace(data, i+1)
				if open == '{' {
					if i, ok = memberKey(data, i, depth == 1, &key); !ok {
						return doc, ErrSyntax
					}
				}
				break
			}
			if data[i] != open+2 {
				return doc, ErrSyntax
			}
			i++
			stack = stack[:depth-1]
		}
	}
}

// memberKey reads a member's key and its colon at data[i] and returns the
// index of what follows them; when root (the object is the document), it
// also keeps the span between the key's quotes in *key.
func memberKey(data []byte, i int, root bool, key *Span) (int, bool) {
	if i == len(data) || data[i] != '"' {
		return i, false
	}
	end, _, ok := SkipString(data, i)
	if !ok {
		return end, false
	}
	if root {
		*key = Span{i + 1, end - 1}
	}
	i = skipSpace(data, end)
	if i == len(data) || data[i] != ':' {
		return i, false
	}
	return skipSpace(data, i+1), true
}

// SkipString returns the index after the JSON string that opens at
// data[i] (a quote), whether the string has escapes, and whether it is
// valid JSON. As with encoding/json.Valid, bytes are not checked to be
// UTF-8.
func SkipString[T ~string | ~[]byte](data T, i int) (end int, escaped, ok bool) {
	j := skipPlain(data, i+1)
	if j < len(data) && data[j] == '"' {
		return j + 1, false, true
	}
	end, ok = scanString(data, j)
	return end, true, ok
}

// scanString reads a string whose content starts at data[i] and returns
// the index after its closing quote.
func scanString[T ~string | ~[]byte](data T, i int) (int, bool) {
	for {
		i = skipPlain(data, i)
		if i == len(data) {
			return i, false
		}
		switch data[i] {
		case '"':
			return i + 1, true
		case '\\':
			i++
			if i == len(data) {
				return i, false
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if len(data)-i < 5 || !isHex(data[i+1]) || !isHex(data[i+2]) || !isHex(data[i+3]) || !isHex(data[i+4]) {
					return i, false
				}
				i += 5
			default:
				return i, false
			}
		default: // a control character
			return i, false
		}
	}
}

// skipPlain returns the index of the first quote, backslash or control
// character at or after data[i], or len(data). It tests sixteen bytes at
// a time (most strings end within them), in two words (see plainBytes).
func skipPlain[T ~string | ~[]byte](data T, i int) int {
	for ; len(data)-i >= 16; i += 16 {
		lo, hi := plainBytes(word(data, i)), plainBytes(word(data, i+8))
		if lo|hi != 0 {
			if lo != 0 {
				return i + bits.TrailingZeros64(lo)/8
			}
			return i + 8 + bits.TrailingZeros64(hi)/8
		}
	}
	for i < len(data) && data[i] >= 0x20 && data[i] != '"' && data[i] != '\\' {
		i++
	}
	return i
}

// word reads data[i:i+8] as a little-endian word.
func word[T ~string | ~[]byte](data T, i int) uint64 {
	w := data[i : i+8]
	return uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
}

// plainBytes flags the high bit of the first byte of x that is a quote, a
// backslash or a control character, and maybe of later bytes. In
// (x - ones*n) &^ x & highs, the lowest byte flagged is the first byte of x
// below n (a borrow may only flag bytes above it); x^(ones*c) has a byte
// below 1 where x has c, and the same high bits as x.
func plainBytes(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quotes, backslashes := x^(ones*'"')-ones, x^(ones*'\\')-ones
	return (quotes | backslashes | (x - ones*0x20)) &^ x & highs
}

// scanNumber reads a number at data[i] and returns the index after it.
func scanNumber(data []byte, i int) (int, bool) {
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i == len(data) || !isDigit(data[i]):
		return i, false
	case data[i] == '0':
		i++
	default:
		i = skipDigits(data, i)
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i == len(data) || !isDigit(data[i]) {
			return i, false
		}
		i = skipDigits(data, i)
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i == len(data) || !isDigit(data[i]) {
			return i, false
		}
		i = skipDigits(data, i)
	}
	return i, true
}

// scanLiteral reads lit (true, false or null) at data[i] and returns the
// index after it.
func scanLiteral(data []byte, i int, lit string) (int, bool) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && data[i] <= ' ' && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t') {
		i++
	}
	return i
}

func skipDigits(data []byte, i int) int {
	for i < len(data) && isDigit(data[i]) {
		i++
	}
	return i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
