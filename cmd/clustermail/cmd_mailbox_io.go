package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"clustermail/api"
	"clustermail/backup"

	"github.com/spf13/cobra"
)

// mboxFormatHelp describes the files export writes and import reads; both
// commands show it.
const mboxFormatHelp = "Files are mbox, in the mboxrd variant: a \"From \" line with the sender and\n" +
	"the internal date (UTC, to the second) before each message, and a \">\" added\n" +
	"to every line of a message that starts with \"From \", \">From \", \">>From \"\n" +
	"and so on (the reader takes one away). Lines end in LF in the file and in\n" +
	"CRLF in the store; a message that would not come back byte for byte (bare\n" +
	"LFs, no final line break) carries an X-Clustermail-Mbox header that says so.\n" +
	"Flags are in the headers mutt and Dovecot use, placed first: Status\n" +
	"(R: \\Seen), X-Status (A: \\Answered, F: \\Flagged, T: \\Draft, D: \\Deleted)\n" +
	"and X-Keywords (the other flags). UIDs are not kept.\n\n" +
	"An export of every folder (--all) is a directory with one mbox file per\n" +
	"folder, named after it: \"Work/Projects\" is Work/Projects.mbox (characters\n" +
	"that are not safe in file names, and a leading dot, are written %XX)."

// exportOptions are the flags of "mailbox export".
type exportOptions struct {
	folder string
	all    bool
	output string
	prog   progressOptions
}

// importOptions are the flags of "mailbox import".
type importOptions struct {
	folder string
	prog   progressOptions
}

// newMailboxIOCmds returns "mailbox export" and "mailbox import",
// registered under the mailbox group (whose flags they share).
func newMailboxIOCmds(opts *apiOptions) []*cobra.Command {
	var eo exportOptions
	export := &cobra.Command{
		Use:   "export ADDRESS [--folder NAME | --all -o DIR] [-o FILE]",
		Short: "Write an account's folder, or every folder, as mbox",
		Long: "Write one folder of an account (INBOX unless --folder) as an mbox file, to\n" +
			"stdout or -o FILE; or, with --all, every folder into the directory -o DIR.\n" +
			"The node that owns the mailbox serves it; any node forwards there. The\n" +
			"folder is read message by message while it may change: a message expunged\n" +
			"meanwhile is left out, one added after the start may be.\n\n" + mboxFormatHelp + streamHelp,
		Example: "  clustermail mailbox export alice@example.org -o alice-inbox.mbox\n" +
			"  clustermail mailbox export alice@example.org --folder Work/Projects > projects.mbox\n" +
			"  clustermail mailbox export alice@example.org --all -o backup/alice",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: opts.streamE(func(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string, wd *watchdog) error {
			return opts.mailboxExport(ctx, c, cmd, args[0], &eo, wd)
		}),
	}
	export.Flags().StringVar(&eo.folder, "folder", "", "the folder to export (default INBOX)")
	export.Flags().BoolVar(&eo.all, "all", false, "export every folder, one mbox file each, into the directory -o")
	export.Flags().StringVarP(&eo.output, "output", "o", "", "the file (or with --all the directory) to write; default stdout")
	eo.prog.register(export)

	var imo importOptions
	imp := &cobra.Command{
		Use:   "import ADDRESS [--folder NAME] PATH",
		Short: "Append the messages of an mbox file, a directory of them, or a Maildir",
		Long: "Append the messages of PATH to an account, each with its flags and internal\n" +
			"date, creating folders as needed. PATH is:\n" +
			"  - an mbox file (- for stdin), imported into --folder (default INBOX);\n" +
			"  - a directory of .mbox files, as \"export --all\" writes it: each file\n" +
			"    goes to the folder it is named after (under --folder, if given);\n" +
			"  - a Maildir (cur/ and new/; flags from the \":2,\" suffix, the date from\n" +
			"    the file's modification time), with its Maildir++ subfolders (.A.B\n" +
			"    is the folder A/B). Import a Maildir that no client is using.\n" +
			"Messages are stored as they arrive, so a large file streams through. If the\n" +
			"import stops, the messages before the failure stay imported. Importing the\n" +
			"same file twice stores its messages twice. The quota is not enforced (an\n" +
			"import is a restore), but the command warns when the account ends up over it.\n\n" +
			mboxFormatHelp + streamHelp,
		Example: "  clustermail mailbox import bob@example.org alice-inbox.mbox\n" +
			"  clustermail mailbox import bob@example.org --folder Old backup/alice\n" +
			"  clustermail mailbox import carol@example.org ~carol/Maildir",
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: opts.streamE(func(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string, wd *watchdog) error {
			return opts.mailboxImport(ctx, c, cmd, args[0], args[1], &imo, wd)
		}),
	}
	imp.Flags().StringVar(&imo.folder, "folder", "", "the folder to import into (default INBOX); with a directory, the parent of its folders")
	imo.prog.register(imp)
	return []*cobra.Command{export, imp}
}

// exportResult is one exported folder, in the summary and --json.
type exportResult struct {
	Folder   string `json:"folder"`
	File     string `json:"file,omitempty"`
	Messages int    `json:"messages"`
	Bytes    int64  `json:"bytes"` // of mbox written
}

func (o *apiOptions) mailboxExport(ctx context.Context, c *api.Client, cmd *cobra.Command, address string, eo *exportOptions, wd *watchdog) error {
	toStdout := eo.output == "" || eo.output == "-"
	var results []exportResult
	if !eo.all {
		folder := eo.folder
		if folder == "" {
			folder = "INBOX"
		}
		r, err := o.exportFolder(ctx, c, cmd, address, folder, eo.output, &eo.prog, wd)
		if err != nil {
			return err
		}
		results = append(results, r)
	} else {
		if eo.folder != "" {
			return errors.New("mailbox export: --folder and --all exclude each other")
		}
		if toStdout {
			return errors.New("mailbox export: --all writes one file per folder: name a directory with -o")
		}
		qctx, cancel := wd.quick(ctx)
		st, err := c.MailboxStats(qctx, address)
		cancel()
		if err != nil {
			return opError("mailbox export", address, err)
		}
		// Check every target first: an export must not overwrite a
		// previous one halfway through.
		for _, f := range st.Folders {
			p := filepath.Join(eo.output, backup.FolderFile(f.Name))
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("mailbox export: %s exists; export into a new or empty directory", p)
			}
		}
		for _, f := range st.Folders {
			p := filepath.Join(eo.output, backup.FolderFile(f.Name))
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return fmt.Errorf("mailbox export: %w", err)
			}
			r, err := o.exportFolder(ctx, c, cmd, address, f.Name, p, &eo.prog, wd)
			if err != nil {
				o.printExports(cmd, results, false)
				return err
			}
			results = append(results, r)
		}
	}
	return o.printExports(cmd, results, toStdout)
}

// exportFolder writes one folder to path ("" or "-": stdout). A file is
// written beside its final name and renamed when complete, so a failed
// export leaves no file that looks whole.
func (o *apiOptions) exportFolder(ctx context.Context, c *api.Client, cmd *cobra.Command, address, folder, path string, po *progressOptions, wd *watchdog) (exportResult, error) {
	subject := address + " " + strconv.Quote(folder)
	exp, err := c.ExportMailbox(ctx, address, folder)
	if err != nil {
		return exportResult{}, opError("mailbox export", subject, err)
	}
	defer exp.Close()
	prog := po.newProgress(cmd, folder)
	prog.totalMsgs = exp.Messages
	m := &meter{wd: wd, prog: prog}
	err = writeOutput(cmd, "mailbox export", path, func(out io.Writer) error {
		_, err := io.Copy(m.writer(out), exp)
		m.done()
		if err != nil {
			return opError("mailbox export", subject, err)
		}
		return nil
	})
	if err != nil {
		return exportResult{}, err
	}
	return exportResult{Folder: folder, File: path, Messages: m.count.Messages, Bytes: m.count.Bytes}, nil
}

// printExports writes the summary: to stdout, or to stderr when stdout
// carries the mbox.
func (o *apiOptions) printExports(cmd *cobra.Command, results []exportResult, toStdout bool) error {
	w := cmdOut(cmd)
	if toStdout {
		w = cmd.ErrOrStderr()
	}
	if o.json {
		return printJSON(w, results)
	}
	if toStdout {
		for _, r := range results {
			fmt.Fprintf(w, "exported %d messages (%s) from %q\n", r.Messages, formatSize(r.Bytes), r.Folder)
		}
		return nil
	}
	t := newTable(w, "folder", "messages", "size", "file")
	for _, r := range results {
		t.row(r.Folder, strconv.Itoa(r.Messages), formatSize(r.Bytes), r.File)
	}
	return t.flush()
}

// importSource is one folder's worth of messages to import.
type importSource struct {
	folder  string               // the folder it goes into
	from    string               // where it comes from, for the summary and errors
	file    string               // an mbox file, "-" for stdin
	maildir []backup.MaildirFile // or the messages of a Maildir folder
}

// importSources works out what PATH holds: see the import command's help.
func importSources(path, folder string) (srcs []importSource, skipped []string, err error) {
	under := func(name string) string {
		switch {
		case folder == "":
			return name
		case name == "":
			return folder
		}
		return folder + "/" + name
	}
	if path == "-" {
		return []importSource{{folder: cmp.Or(folder, "INBOX"), from: "stdin", file: "-"}}, nil, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if !fi.IsDir() {
		return []importSource{{folder: cmp.Or(folder, "INBOX"), from: path, file: path}}, nil, nil
	}
	if backup.IsMaildir(path) {
		folders, err := backup.MaildirFolders(path)
		if err != nil {
			return nil, nil, err
		}
		for _, f := range folders {
			files, err := backup.MaildirFiles(f.Dir)
			if err != nil {
				return nil, nil, err
			}
			name := under(f.Name)
			if name == "" {
				name = "INBOX"
			}
			srcs = append(srcs, importSource{folder: name, from: f.Dir, maildir: files})
		}
		return srcs, nil, nil
	}
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(path, p)
		if err != nil {
			return err
		}
		name, err := backup.FileFolder(rel)
		if err != nil || !d.Type().IsRegular() {
			skipped = append(skipped, p)
			return nil
		}
		srcs = append(srcs, importSource{folder: under(name), from: p, file: p})
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(srcs) == 0 {
		return nil, skipped, fmt.Errorf("%s holds no %s files and is not a Maildir (no cur/ or new/)", path, backup.MboxExt)
	}
	return srcs, skipped, nil
}

func (o *apiOptions) mailboxImport(ctx context.Context, c *api.Client, cmd *cobra.Command, address, path string, imo *importOptions, wd *watchdog) error {
	srcs, skipped, err := importSources(path, imo.folder)
	if err != nil {
		return fmt.Errorf("mailbox import: %w", err)
	}
	for _, s := range skipped {
		fmt.Fprintf(cmd.ErrOrStderr(), "skipped %s: not a %s file\n", s, backup.MboxExt)
	}
	var results []api.MailboxImport
	var froms []string
	for _, src := range srcs {
		r, err := o.importOne(ctx, c, cmd, address, src, &imo.prog, wd)
		if err != nil {
			if len(results) > 0 {
				o.printImports(cmd, results, froms)
			}
			return err
		}
		results, froms = append(results, r), append(froms, src.from)
	}
	return o.printImports(cmd, results, froms)
}

// importOne streams one source into its folder.
func (o *apiOptions) importOne(ctx context.Context, c *api.Client, cmd *cobra.Command, address string, src importSource, po *progressOptions, wd *watchdog) (api.MailboxImport, error) {
	prog := po.newProgress(cmd, src.folder)
	var in io.Reader
	size := int64(-1)
	switch {
	case src.maildir != nil:
		prog.totalMsgs = len(src.maildir)
		rc := maildirMbox(src.maildir)
		defer rc.Close()
		in = rc
	case src.file == "-":
		in = cmd.InOrStdin()
	default:
		f, err := os.Open(src.file)
		if err != nil {
			return api.MailboxImport{}, fmt.Errorf("mailbox import: %w", err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return api.MailboxImport{}, fmt.Errorf("mailbox import: %w", err)
		}
		size = fi.Size()
		prog.totalBytes = size
		if prog.enabled {
			// The message total costs a read of the file; only a
			// progress line needs it.
			var cnt backup.Counter
			if _, err := io.Copy(&cnt, f); err == nil {
				prog.totalMsgs = cnt.Messages
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return api.MailboxImport{}, fmt.Errorf("mailbox import: %w", err)
			}
		}
		in = f
	}
	m := &meter{wd: wd, prog: prog}
	r, err := c.ImportMailbox(ctx, address, src.folder, m.reader(in), size)
	m.done()
	if err != nil {
		return r, opError("mailbox import", fmt.Sprintf("%s %q from %s", address, src.folder, src.from), err)
	}
	return r, nil
}

// maildirMbox streams Maildir messages as mbox, the format the import
// endpoint reads.
func maildirMbox(files []backup.MaildirFile) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		mw := backup.NewMboxWriter(pw)
		for _, f := range files {
			m, err := backup.ReadMaildirFile(f)
			if errors.Is(err, fs.ErrNotExist) {
				continue // renamed or deleted since the listing
			}
			if err == nil {
				err = mw.Write(m)
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Flush())
	}()
	return pr
}

func (o *apiOptions) printImports(cmd *cobra.Command, results []api.MailboxImport, froms []string) error {
	w := cmdOut(cmd)
	if o.json {
		return printJSON(w, results)
	}
	t := newTable(w, "folder", "messages", "size", "from")
	var created []string
	for i, r := range results {
		t.row(r.Folder, strconv.Itoa(r.Messages), formatSize(r.Bytes), froms[i])
		created = append(created, r.Created...)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(created) > 0 {
		fmt.Fprintf(w, "created folders: %s\n", strings.Join(created, ", "))
	}
	if last := results[len(results)-1]; last.Quota > 0 && last.Used > last.Quota {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s now uses %s of its %s quota: new mail is deferred until it is below\n",
			last.Address, formatSize(last.Used), formatSize(last.Quota))
	}
	return nil
}
