package results

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Save writes doc as indented JSON to dir/<id>.json atomically: it writes a
// temporary file in the same directory, syncs it and renames it into place.
// It returns the final path.
func Save(dir string, doc *Document) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("save result: %w", err)
	}
	path := filepath.Join(dir, doc.ID+".json")
	return path, WriteFile(path, doc)
}

// WriteFile writes doc to path atomically (temporary file, fsync, rename).
func WriteFile(path string, doc *Document) error {
	if doc.Schema == 0 {
		doc.Schema = SchemaVersion
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	b = append(b, '\n')
	return WriteAtomic("save result", path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// OutputPathError is an output path that cannot be written because its
// directory does not exist or is not a directory: the user's input was
// wrong, not the write.
type OutputPathError struct {
	Op, Path, Dir, Why string
}

func (e *OutputPathError) Error() string {
	return fmt.Sprintf("%s %s: directory %s %s", e.Op, e.Path, e.Dir, e.Why)
}

// WriteAtomic writes what write produces to path through a temporary file
// in the same directory (synced, mode 0644, renamed into place), so that a
// failure never leaves half a file. op names the operation in errors
// ("write report"). A path whose directory is missing fails before
// anything is written, naming the path, with an *OutputPathError.
func WriteAtomic(op, path string, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		why := "does not exist"
		if err == nil {
			why = "is not a directory"
		} else if !errors.Is(err, fs.ErrNotExist) {
			why = err.Error()
		}
		return &OutputPathError{Op: op, Path: path, Dir: dir, Why: why}
	}
	tmp, err := os.CreateTemp(dir, ".loadcap-*.tmp")
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, path, err)
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriter(tmp)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, path, err)
	}
	return nil
}

// CheckWritable verifies that dir exists (creating it if needed) and that a
// file can be created in it, so that a run fails before sending traffic
// rather than losing its measurements at the end.
func CheckWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("check --out %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".loadcap-probe-*")
	if err != nil {
		return fmt.Errorf("check --out %s: %w", dir, err)
	}
	name := f.Name()
	_, werr := f.Write(make([]byte, 64<<10))
	cerr := f.Close()
	os.Remove(name)
	if werr != nil {
		return fmt.Errorf("check --out %s: %w", dir, werr)
	}
	if cerr != nil {
		return fmt.Errorf("check --out %s: %w", dir, cerr)
	}
	return nil
}

// Load reads and validates one result file.
func Load(path string) (*Document, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load result: %w", err)
	}
	var doc Document
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("load result %s: not a loadcap result document: %w", path, err)
	}
	if doc.Schema > SchemaVersion {
		return nil, fmt.Errorf("load result %s: schema %d is newer than this loadcap understands (%d); upgrade loadcap", path, doc.Schema, SchemaVersion)
	}
	if doc.ID == "" {
		return nil, fmt.Errorf("load result %s: missing id: not a loadcap result document", path)
	}
	f, err := parseFile(path, b)
	if err != nil {
		return nil, err
	}
	if f.Doc == nil {
		return nil, fmt.Errorf("load result %s: a matrix summary, not a run's result document", path)
	}
	return f.Doc, nil
}
