package backup

import (
	"fmt"
	"path/filepath"
	"strings"
)

// MboxExt is the extension of the mbox files of a folder export.
const MboxExt = ".mbox"

// An export of every folder is a directory with one mbox file per folder,
// the layout mutt and Dovecot use for mbox folders: "Work/Projects" is the
// file Work/Projects.mbox. Each name component is escaped so that any
// folder name makes a safe, portable file name: '%', the characters
// Windows forbids, and a leading '.' (no "..", no hidden files) become
// %XX. Everything else, including non-ASCII letters, is kept as is.

// FolderFile returns the relative path of the mbox file of folder.
func FolderFile(folder string) string {
	parts := strings.Split(folder, "/")
	for i, p := range parts {
		var b strings.Builder
		for j := 0; j < len(p); j++ {
			c := p[j]
			if c == '%' || c < ' ' || c == 0x7f || strings.IndexByte(`\:*?"<>|`, c) >= 0 || (j == 0 && c == '.') {
				fmt.Fprintf(&b, "%%%02X", c)
				continue
			}
			b.WriteByte(c)
		}
		parts[i] = b.String()
	}
	return filepath.Join(parts...) + MboxExt
}

// FileFolder is the inverse of FolderFile: the folder whose mbox file is
// at the relative path rel.
func FileFolder(rel string) (string, error) {
	if !strings.HasSuffix(rel, MboxExt) {
		return "", fmt.Errorf("%s: not a %s file", rel, MboxExt)
	}
	parts := strings.Split(filepath.ToSlash(strings.TrimSuffix(rel, MboxExt)), "/")
	for i, p := range parts {
		var b strings.Builder
		for j := 0; j < len(p); j++ {
			if p[j] == '%' && j+2 < len(p) && isHex(p[j+1]) && isHex(p[j+2]) {
				b.WriteByte(unhex(p[j+1])<<4 | unhex(p[j+2]))
				j += 2
				continue
			}
			b.WriteByte(p[j])
		}
		if b.Len() == 0 {
			return "", fmt.Errorf("%s: empty folder name", rel)
		}
		parts[i] = b.String()
	}
	return strings.Join(parts, "/"), nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
