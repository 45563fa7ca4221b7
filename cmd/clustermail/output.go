package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

// maxCell is the width beyond which free-text cells (From, Subject) are cut,
// so that one long subject does not push every other column off the screen.
const maxCell = 40

// printJSON writes v as indented JSON followed by a newline. A nil slice is
// written as [] rather than null: the client decodes an empty list into a
// nil slice, and scripts piping into jq expect an array either way.
func printJSON(w io.Writer, v any) error {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.IsNil() {
		v = reflect.MakeSlice(rv.Type(), 0, 0).Interface()
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Addresses and subjects may contain <, > and &; escaping them as
	// \u003c would only make the output harder to read.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// table collects rows and prints them aligned in columns under a header.
type table struct {
	tw *tabwriter.Writer
}

// newTable starts a table on w; the header is printed in capitals.
func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
	caps := make([]string, len(header))
	for i, h := range header {
		caps[i] = strings.ToUpper(h)
	}
	t.row(caps...)
	return t
}

// row adds one row. Cells are cleaned of control characters because a tab
// or newline would break the columns and, worse, mail headers such as the
// subject come from strangers and could carry terminal escape sequences.
func (t *table) row(cells ...string) {
	clean := make([]string, len(cells))
	for i, c := range cells {
		c = sanitize(c)
		if c == "" {
			// An empty cell would make the row look shifted; a dash
			// says "nothing here" explicitly.
			c = "-"
		}
		clean[i] = c
	}
	fmt.Fprintln(t.tw, strings.Join(clean, "\t"))
}

// flush prints the table.
func (t *table) flush() error {
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// kv is one "key: value" line of a detail view.
type kv struct {
	key, value string
}

// printKV writes "key: value" lines with the values aligned.
func printKV(w io.Writer, pairs []kv) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	for _, p := range pairs {
		v := sanitize(p.value)
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", p.key, v)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// sanitize replaces control characters (including tabs and newlines) with
// spaces, see table.row for why.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// truncate shortens s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// formatTime renders a timestamp for tables and detail views, in the
// operator's local time zone; the zero time (not known) renders as "-".
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// formatQuota renders a quota in bytes, 0 meaning no limit.
func formatQuota(q int64) string {
	if q == 0 {
		return "unlimited"
	}
	return formatSize(q)
}

// joinOr joins a list with ", ", or returns none for an empty list.
func joinOr(list []string, none string) string {
	if len(list) == 0 {
		return none
	}
	return strings.Join(list, ", ")
}

// writeOutput hands fill the command's output: stdout for "" and "-",
// otherwise a temporary file beside path, synced and renamed to path once
// fill succeeds, so a partial file never looks like a whole backup. fill's
// error comes back as is; file errors are prefixed with what.
func writeOutput(cmd *cobra.Command, what, path string, fill func(io.Writer) error) error {
	if path == "" || path == "-" {
		return fill(cmdOut(cmd))
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part-*")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := fill(tmp); err != nil {
		return err
	}
	if err := errors.Join(tmp.Sync(), tmp.Close()); err != nil {
		return fmt.Errorf("%s: %s: %w", what, path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	tmp = nil
	return nil
}
