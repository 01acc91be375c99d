package storage

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Reserved is the first key segment a Store keeps for itself (local
// metadata and locks, the probe object of S3 conditional writes); List
// never returns keys under it.
const Reserved = ".statjob"

// CheckKey returns an error wrapping ErrBadKey when key cannot name an
// object: empty, absolute, not UTF-8, holding a NUL, a backslash, an empty
// segment ("a//b", trailing "/"), a "." / ".." segment, or under Reserved.
// Every backend calls it, so a key that works on one backend works on all.
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
	if key == Reserved || strings.HasPrefix(key, Reserved+"/") {
		return bad(Reserved + "/ is reserved")
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

// checkPrefix accepts "" (everything) or any prefix of a valid key.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	// A prefix of a valid key completes to one by appending a letter,
	// unless it ends inside a "." / ".." segment or with "/".
	p := prefix + "x"
	if i := strings.LastIndex(prefix, "/"); i >= 0 && strings.Trim(prefix[i+1:], ".") == "" {
		p = prefix[:i+1] + "x"
	}
	if err := CheckKey(p); err != nil && !strings.HasPrefix(p, Reserved) {
		return fmt.Errorf("list prefix %q: %w", prefix, ErrBadKey)
	}
	return nil
}
