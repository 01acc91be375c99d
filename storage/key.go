package storage

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// CheckKey returns an error wrapping ErrBadKey when key cannot name an
// object: empty, absolute, not UTF-8, holding a NUL, a backslash, an empty
// segment ("a//b", trailing "/") or a "." / ".." segment. Every backend
// calls it, so a key that works on one backend works on all of them.
func CheckKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("key %q: %s: %w", key, why, ErrBadKey) }
	switch {
	case key == "":
		return bad("empty")
	case strings.HasPrefix(key, "/"):
		return bad("absolute")
	case !utf8.ValidString(key):
		return bad("not UTF-8")
	case strings.ContainsAny(key, "\x00\\"):
		return bad("holds NUL or backslash")
	}
	for _, seg := range strings.Split(key, "/") {
		switch seg {
		case "":
			return bad("empty path segment")
		case ".", "..":
			return bad("relative path segment")
		}
	}
	return nil
}

// checkPrefix accepts "" (everything) or a prefix whose complete segments
// are valid; a trailing "/" is allowed ("runs/").
func checkPrefix(prefix string) error {
	p := strings.TrimSuffix(prefix, "/")
	if p == "" && prefix == "" {
		return nil
	}
	if err := CheckKey(p); err != nil {
		return fmt.Errorf("list prefix: %w", err)
	}
	return nil
}
