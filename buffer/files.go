package buffer

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// storeFileExt is the extension of an endpoint's buffer file.
const storeFileExt = ".bbolt"

// unsafeFileChars are replaced in endpoint names used as file names.
var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// StoreFile is one endpoint's buffer file in a buffer directory.
type StoreFile struct {
	Name string // endpoint name as it appears in the file name
	Path string
}

// EndpointFile is where the buffer of the endpoint named endpoint lives
// in the buffer directory dir: the name, every run of characters other
// than ASCII letters, digits, '.', '_' and '-' replaced by one '_', plus
// ".bbolt". The mapping never changes, so that a restart, or an upgrade,
// finds each endpoint's backlog; give endpoints a name to keep it across
// URL changes. Names that differ only in replaced characters share a
// file, which the agent's config validation refuses.
func EndpointFile(dir, endpoint string) StoreFile {
	return StoreFile{Name: endpoint, Path: filepath.Join(dir, unsafeFileChars.ReplaceAllString(endpoint, "_")+storeFileExt)}
}

// StoreFiles lists the endpoint buffer files (<name>.bbolt) in dir, by
// name. Files moved aside as corrupt and compaction leftovers are not
// buffer files and are not listed.
func StoreFiles(dir string) ([]StoreFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("buffer directory: %w", err)
	}
	var out []StoreFile
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(n, storeFileExt) {
			continue
		}
		out = append(out, StoreFile{Name: strings.TrimSuffix(n, storeFileExt), Path: filepath.Join(dir, n)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
