package profiles

import (
	"fmt"
	"strings"
)

// FieldError is a validation error of one key of a profile.
type FieldError struct {
	// Key is the profile key (TOML key or sysctl name).
	Key string
	// Msg says what is wrong with its value.
	Msg string
}

// Error returns `key "K": msg`.
func (e *FieldError) Error() string { return fmt.Sprintf("key %q: %s", e.Key, e.Msg) }

// FileError is an error in a profile file, with the line when known.
type FileError struct {
	// File is the file's path (or "builtin/..." for built-ins).
	File string
	// Line is the 1-based line, 0 when unknown.
	Line int
	// Key is the key at fault, empty when none.
	Key string
	// Err is the underlying error.
	Err error
}

// Error returns "FILE:LINE: key "K": message" in one line.
func (e *FileError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	var fe *FieldError
	if e.Key != "" && !asField(e.Err, &fe) {
		fmt.Fprintf(&b, "key %q: ", e.Key)
	}
	b.WriteString(strings.ReplaceAll(e.Err.Error(), "\n", " "))
	return b.String()
}

// Unwrap returns the underlying error.
func (e *FileError) Unwrap() error { return e.Err }

func asField(err error, fe **FieldError) bool {
	f, ok := err.(*FieldError)
	if ok {
		*fe = f
	}
	return ok
}
