package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A data dir of the older layout is refused, never opened as a new node.
func TestOpenStoresRefusesOldLayout(t *testing.T) {
	for _, old := range []string{"state", "mail", "spool", filepath.Join("raft", "log")} {
		d := t.TempDir()
		if err := os.MkdirAll(filepath.Join(d, old), 0o755); err != nil {
			t.Fatal(err)
		}
		n := &Node{cfg: Config{DataDir: d}}
		err := n.openStores()
		if err == nil || !strings.Contains(err.Error(), "older one-database-per-store layout") {
			t.Fatalf("%s: err = %v, want a refusal", old, err)
		}
		if _, err := os.Stat(filepath.Join(d, "db")); !os.IsNotExist(err) {
			t.Fatalf("%s: a new database was created next to the old stores", old)
		}
	}
}
