// Package profiles holds client connection profiles and sysctl profiles: the
// built-ins embedded in the binary and user files, with strict parsing and a
// linter that says what each sysctl really does on the running kernel.
package profiles
