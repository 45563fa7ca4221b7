package backup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Maildir: every message is a file in cur/ or new/ (tmp/ holds deliveries
// in progress and is skipped). A file name in cur/ ends with ":2," and the
// flag letters (maildirLetters); lowercase letters are keywords, numbered
// in the folder's dovecot-keywords file when Dovecot wrote it. The
// internal date is the file's modification time, as Dovecot takes it.
// Subfolders follow Maildir++: ".Work.Projects" beside cur/ is the folder
// "Work/Projects".

// maildirLetters maps the Maildir info letters to IMAP flags. P ("passed",
// forwarded) has no system flag; $Forwarded is the keyword clients use.
var maildirLetters = map[byte]string{
	'D': `\Draft`, 'F': `\Flagged`, 'P': `$Forwarded`, 'R': `\Answered`, 'S': `\Seen`, 'T': `\Deleted`,
}

// MaildirFlags returns the flags of a Maildir file name: the letters after
// ":2," (or "!2," as on file systems without ':'). keywords maps the
// lowercase letters: 'a' is keywords[0].
func MaildirFlags(name string, keywords []string) []string {
	i := strings.LastIndex(name, ":2,")
	if i < 0 {
		i = strings.LastIndex(name, "!2,")
	}
	if i < 0 {
		return nil
	}
	var out []string
	for _, c := range []byte(name[i+3:]) {
		f, ok := maildirLetters[c]
		if !ok && c >= 'a' && c <= 'z' && int(c-'a') < len(keywords) {
			f, ok = keywords[c-'a'], true
		}
		if ok && ValidFlag(f) && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// IsMaildir reports whether dir looks like a Maildir: it has cur/ or new/.
func IsMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// MaildirFolder is one folder of a Maildir++ tree.
type MaildirFolder struct {
	Name string // "" for the top folder, else "/"-separated: "Work/Projects"
	Dir  string
}

// MaildirFolders lists the folder at root and its Maildir++ subfolders
// (".Work.Projects"), by name.
func MaildirFolders(root string) ([]MaildirFolder, error) {
	out := []MaildirFolder{{Name: "", Dir: root}}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("read maildir %s: %w", root, err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || len(name) < 2 || name[0] != '.' || name == ".." {
			continue
		}
		dir := filepath.Join(root, name)
		if !IsMaildir(dir) {
			continue
		}
		out = append(out, MaildirFolder{Name: strings.ReplaceAll(name[1:], ".", "/"), Dir: dir})
	}
	slices.SortFunc(out, func(a, b MaildirFolder) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// MaildirFile is one message file of a Maildir folder.
type MaildirFile struct {
	Path  string
	Size  int64
	Flags []string
	Info  fs.FileInfo
}

// MaildirFiles lists the messages of one Maildir folder (cur/ and new/),
// oldest first, with their flags. It reads no message.
func MaildirFiles(dir string) ([]MaildirFile, error) {
	keywords := dovecotKeywords(dir)
	var out []MaildirFile
	for _, sub := range []string{"cur", "new"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read maildir: %w", err)
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // moved by a client meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("read maildir: %w", err)
			}
			var flags []string
			if sub == "cur" {
				flags = MaildirFlags(e.Name(), keywords)
			}
			out = append(out, MaildirFile{Path: filepath.Join(dir, sub, e.Name()), Size: fi.Size(), Flags: flags, Info: fi})
		}
	}
	slices.SortFunc(out, func(a, b MaildirFile) int {
		if c := a.Info.ModTime().Compare(b.Info.ModTime()); c != 0 {
			return c
		}
		return strings.Compare(filepath.Base(a.Path), filepath.Base(b.Path))
	})
	return out, nil
}

// ReadMaildirFile reads one message file as a Message to import: CRLF line
// endings, the modification time as internal date.
func ReadMaildirFile(f MaildirFile) (Message, error) {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return Message{}, fmt.Errorf("read %s: %w", f.Path, err)
	}
	data = ToCRLF(data)
	return Message{Sender: SenderOf(data), Date: f.Info.ModTime(), Flags: f.Flags, Data: data}, nil
}

// dovecotKeywords reads the dovecot-keywords file of a Maildir folder:
// lines "N name", N counting from 0 for 'a'. A missing or unreadable file
// means no keywords.
func dovecotKeywords(dir string) []string {
	f, err := os.Open(filepath.Join(dir, "dovecot-keywords"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		num, name, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		i, err := strconv.Atoi(num)
		if !ok || err != nil || i < 0 || i >= 26 {
			continue
		}
		for len(out) <= i {
			out = append(out, "")
		}
		out[i] = strings.TrimSpace(name)
	}
	return out
}
