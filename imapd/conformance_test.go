package imapd

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// TestConformance walks every command and extension the server advertises,
// on the wire, in one session: each step sends a command and checks the
// tagged answer and the untagged responses by regular expression. The
// steps build on each other (mailboxes created, messages flagged), as a
// client's session would.
func TestConformance(t *testing.T) {
	h := newHarness(t, nil)
	h.deliver(t, testUser, plainMsg)     // INBOX UID 1
	h.deliver(t, testUser, multipartMsg) // INBOX UID 2
	rc := h.rawLogin(t)

	appendCmd := func(mailbox, flagsAndDate, body string) string {
		// LITERAL+: the literal follows without waiting for "+".
		return fmt.Sprintf("APPEND %s %s{%d+}\r\n%s", mailbox, flagsAndDate, len(body), body)
	}
	fevrier := "février"

	steps := []struct {
		name   string
		do     func() // before the command
		cmd    string
		tagged string   // the tagged answer after the tag must match
		want   []string // each must match an untagged line
		never  []string // no untagged line may match
	}{
		// Capabilities: only what works, and every one of them.
		{name: "capability", cmd: "CAPABILITY", tagged: `^OK`, want: []string{
			`^\* CAPABILITY IMAP4rev2 IMAP4rev1 `,
			` IDLE( |$)`, ` UIDPLUS( |$)`, ` MOVE( |$)`, ` SPECIAL-USE( |$)`, ` CREATE-SPECIAL-USE( |$)`,
			` NAMESPACE( |$)`, ` QUOTA( |$)`, ` QUOTA=RES-STORAGE( |$)`, ` ENABLE( |$)`, ` LITERAL\+( |$)`,
			` UNSELECT( |$)`, ` CONDSTORE( |$)`, ` ESEARCH( |$)`, ` SEARCHRES( |$)`, ` LIST-EXTENDED( |$)`,
			` LIST-STATUS( |$)`, ` CHILDREN( |$)`, ` BINARY( |$)`, ` STATUS=SIZE( |$)`, ` APPENDLIMIT=67108864( |$)`,
		}, never: []string{`QRESYNC`, `QUOTASET`, `AUTH=`, `STARTTLS`}},
		{name: "namespace", cmd: "NAMESPACE", tagged: `^OK`, want: []string{`^\* NAMESPACE \(\("" "/"\)\) NIL NIL$`}},

		// Folders.
		{name: "list special-use defaults", cmd: `LIST "" "*"`, tagged: `^OK`, want: []string{
			`^\* LIST \(\\HasNoChildren\) "/" INBOX$`,
			`^\* LIST \(\\HasNoChildren \\Sent\) "/" "?Sent"?$`,
			`^\* LIST \(\\HasNoChildren \\Drafts\) "/" "?Drafts"?$`,
			`^\* LIST \(\\HasNoChildren \\Trash\) "/" "?Trash"?$`,
			`^\* LIST \(\\HasNoChildren \\Junk\) "/" "?Junk"?$`,
			`^\* LIST \(\\HasNoChildren \\Archive\) "/" "?Archive"?$`,
		}},
		{name: "list delimiter", cmd: `LIST "" ""`, tagged: `^OK`, want: []string{`^\* LIST \(\\Noselect\) "/" ""$`}},
		{name: "list inbox case-insensitively", cmd: `LIST "" "inbox"`, tagged: `^OK`, want: []string{`^\* LIST \(.*\) "/" INBOX$`}},
		{name: "create with parents", cmd: "CREATE Projects/2024", tagged: `^OK`},
		{name: "list percent", cmd: `LIST "" "Projects/%"`, tagged: `^OK`, want: []string{`^\* LIST \(\\HasNoChildren\) "/" "?Projects/2024"?$`}},
		{name: "list children", cmd: `LIST "" "Pro*"`, tagged: `^OK`, want: []string{`^\* LIST \(\\HasChildren\) "/" "?Projects"?$`}},
		{name: "create special-use", cmd: `CREATE Receipts (USE (\Flagged))`, tagged: `^OK`},
		{name: "list return special-use", cmd: `LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)`, tagged: `^OK`,
			want: []string{`^\* LIST \(.*\\Flagged\) "/" "?Receipts"?$`}, never: []string{`INBOX`}},
		{name: "create modified utf-7", cmd: `CREATE "&ANw-ber"`, tagged: `^OK`},
		{name: "list modified utf-7", cmd: `LIST "" "&ANw-b*"`, tagged: `^OK`, want: []string{`^\* LIST \(.*\) "/" "&ANw-ber"$`}},
		{name: "create existing", cmd: "CREATE Projects", tagged: `^NO \[ALREADYEXISTS\]`},
		{name: "create inbox", cmd: "CREATE inbox", tagged: `^NO \[ALREADYEXISTS\]`},
		{name: "rename", cmd: "RENAME Projects Work", tagged: `^OK`},
		{name: "rename moved children", cmd: `LIST "" "Work/*"`, tagged: `^OK`, want: []string{`"?Work/2024"?$`}},
		{name: "rename missing", cmd: "RENAME Nope Other", tagged: `^NO \[NONEXISTENT\]`},
		{name: "subscribe", cmd: "SUBSCRIBE Work", tagged: `^OK`},
		{name: "lsub", cmd: `LSUB "" "W*"`, tagged: `^OK`, want: []string{`^\* LSUB \(.*\) "/" "?Work"?$`}},
		{name: "list subscribed", cmd: `LIST (SUBSCRIBED) "" "*"`, tagged: `^OK`,
			want: []string{`^\* LIST \(\\Subscribed .*\) "/" "?Work"?$`}, never: []string{`Work/2024`}},
		{name: "list recursivematch", cmd: `LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"`, tagged: `^OK`},
		{name: "unsubscribe", cmd: "UNSUBSCRIBE Work", tagged: `^OK`},
		{name: "lsub after unsubscribe", cmd: `LSUB "" "W*"`, tagged: `^OK`, never: []string{`LSUB`}},
		{name: "delete", cmd: "DELETE Work/2024", tagged: `^OK`},
		{name: "delete missing", cmd: "DELETE Work/2024", tagged: `^NO \[NONEXISTENT\]`},
		{name: "delete inbox", cmd: "DELETE INBOX", tagged: `^NO`},
		{name: "status", cmd: "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ RECENT)", tagged: `^OK`,
			want: []string{`^\* STATUS INBOX \(MESSAGES 2 UIDNEXT 3 UIDVALIDITY \d+ UNSEEN 2 DELETED 0 SIZE \d+ RECENT 0 HIGHESTMODSEQ \d+\)$`}},
		{name: "status missing", cmd: "STATUS Nope (MESSAGES)", tagged: `^NO \[NONEXISTENT\]`},
		{name: "list-status", cmd: `LIST "" "INBOX" RETURN (STATUS (MESSAGES UNSEEN))`, tagged: `^OK`,
			want: []string{`^\* LIST .* INBOX$`, `^\* STATUS INBOX \(MESSAGES 2 UNSEEN 2\)$`}},
		{name: "quota root, unlimited account", cmd: "GETQUOTAROOT INBOX", tagged: `^OK`, want: []string{`^\* QUOTAROOT INBOX$`}, never: []string{`^\* QUOTA `}},
		{name: "quota, unlimited account", cmd: `GETQUOTA ""`, tagged: `^NO \[NONEXISTENT\]`},
		{name: "quota limited", do: func() { h.backend.setQuota(testUser, 10<<20) }, cmd: "GETQUOTAROOT INBOX", tagged: `^OK`,
			want: []string{`^\* QUOTAROOT INBOX ""$`, `^\* QUOTA "" \(STORAGE 1 10240\)$`}},
		{name: "getquota", cmd: `GETQUOTA ""`, tagged: `^OK`, want: []string{`^\* QUOTA "" \(STORAGE 1 10240\)$`}},
		{name: "setquota is not offered", cmd: `SETQUOTA "" (STORAGE 1)`, tagged: `^BAD`},

		// APPEND with flags and date, UIDPLUS.
		{name: "append", cmd: appendCmd("Drafts", `(\Draft \Seen) "05-Mar-2024 11:00:00 +0000" `, plainMsg), tagged: `^OK \[APPENDUID \d+ 1\]`},
		{name: "append to missing", cmd: appendCmd("Nope", "", plainMsg), tagged: `^NO \[TRYCREATE\]`},
		{name: "appended flags and date", cmd: "STATUS Drafts (MESSAGES UNSEEN)", tagged: `^OK`, want: []string{`\(MESSAGES 1 UNSEEN 0\)`}},

		// SELECT with CONDSTORE.
		{name: "select", cmd: "SELECT INBOX (CONDSTORE)", tagged: `^OK \[READ-WRITE\]`, want: []string{
			`^\* 2 EXISTS$`, `^\* 0 RECENT$`, `^\* OK \[UNSEEN 1\]`, `^\* OK \[UIDVALIDITY \d+\]`, `^\* OK \[UIDNEXT 3\]`,
			`^\* FLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft\)$`,
			`^\* OK \[PERMANENTFLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft \\\*\)\]`,
			`^\* OK \[HIGHESTMODSEQ \d+\]`,
		}},

		// FETCH of every item.
		{name: "fetch metadata", cmd: "FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ)", tagged: `^OK`, want: []string{
			`^\* 1 FETCH \(UID 1 FLAGS \(\) INTERNALDATE " 5-Mar-2024 \d\d:\d\d:00 [+-]\d{4}" RFC822.SIZE 250 MODSEQ \(\d+\)\)$`}},
		{name: "fetch envelope", cmd: "FETCH 1 ENVELOPE", tagged: `^OK`, want: []string{
			`^\* 1 FETCH \(ENVELOPE \("Tue, 05 Mar 2024 10:00:00 \+0000" "Lunch plans" \(\("Bob Sender" NIL "bob" "example.test"\)\) .* "<lunch-1@example.test>"\)\)$`}},
		{name: "fetch bodystructure", cmd: "FETCH 2 BODYSTRUCTURE", tagged: `^OK`, want: []string{
			`^\* 2 FETCH \(BODYSTRUCTURE \(\("text" "plain" \("charset" "utf-8"\) NIL NIL "quoted-printable" 41 \d+ NIL NIL NIL NIL\)\("application" "octet-stream" \("name" "data.bin"\) NIL NIL "base64" 12 NIL \("attachment" \("filename" "data.bin"\)\) NIL NIL\) "mixed" \("boundary" "b1"\) NIL NIL NIL\)\)$`}},
		{name: "fetch body (non-extended)", cmd: "FETCH 2 BODY", tagged: `^OK`, want: []string{`^\* 2 FETCH \(BODY \(\("text" "plain" .*\) "mixed"\)\)$`}},
		{name: "fetch all macro", cmd: "FETCH 1 ALL", tagged: `^OK`, want: []string{`^\* 1 FETCH \(FLAGS \(\) INTERNALDATE ".*" RFC822.SIZE 250 ENVELOPE \(`}},
		{name: "fetch header fields", cmd: "FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]", tagged: `^OK`, want: []string{
			`^\* 1 FETCH \(BODY\[HEADER.FIELDS \("SUBJECT"\)\] \{24\}$`, `^Subject: Lunch plans$`}},
		{name: "fetch header fields not", cmd: "FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT FROM)]", tagged: `^OK`,
			want: []string{`^To: Alice`}, never: []string{`^Subject:`, `^From:`}},
		{name: "fetch partial", cmd: "FETCH 1 BODY.PEEK[TEXT]<0.5>", tagged: `^OK`, want: []string{`^\* 1 FETCH \(BODY\[TEXT\]<0> \{5\}$`, `^Shall\)$`}},
		{name: "fetch partial beyond end", cmd: "FETCH 1 BODY.PEEK[TEXT]<1000.5>", tagged: `^OK`, want: []string{`^\* 1 FETCH \(BODY\[TEXT\]<1000> \{0\}$`}},
		{name: "fetch mime part", cmd: "FETCH 2 BODY.PEEK[1]", tagged: `^OK`, want: []string{`^Le rapport de f=C3=A9vrier est pr=C3=AAt\.\)$`}},
		{name: "fetch part mime header", cmd: "FETCH 2 BODY.PEEK[2.MIME]", tagged: `^OK`, want: []string{`^Content-Disposition: attachment`}},
		{name: "fetch binary", cmd: "FETCH 2 (BINARY.PEEK[2] BINARY.SIZE[2])", tagged: `^OK`, want: []string{`^\* 2 FETCH \(BINARY\[2\] ~\{8\}$`, `BINARY.SIZE\[2\] 8\)$`}},
		{name: "rfc822.header", cmd: "FETCH 1 RFC822.HEADER", tagged: `^OK`, want: []string{`^\* 1 FETCH \(RFC822.HEADER \{\d+\}$`}},
		{name: "peek leaves unseen", cmd: "FETCH 1 FLAGS", tagged: `^OK`, want: []string{`^\* 1 FETCH \(FLAGS \(\)\)$`}},
		{name: "body[] sets seen", cmd: "FETCH 1 BODY[]", tagged: `^OK`, want: []string{`^\* 1 FETCH \(FLAGS \(\\Seen\) MODSEQ \(\d+\) BODY\[\] \{250\}$`}},
		{name: "uid fetch", cmd: "UID FETCH 2:* FLAGS", tagged: `^OK`, want: []string{`^\* 2 FETCH \(UID 2 FLAGS \(\)\)$`}},
		{name: "uid fetch star beyond", cmd: "UID FETCH 9:* UID", tagged: `^OK`, want: []string{`^\* 2 FETCH \(UID 2\)$`}},
		{name: "fetch bad seq", cmd: "FETCH 9 FLAGS", tagged: `^BAD`},

		// STORE, with CONDSTORE.
		{name: "store add", cmd: `STORE 1 +FLAGS (\Flagged)`, tagged: `^OK`, want: []string{`^\* 1 FETCH \(FLAGS \(\\Seen \\Flagged\) MODSEQ \(\d+\)\)$`}},
		{name: "store silent", cmd: `STORE 1 -FLAGS.SILENT (\Flagged)`, tagged: `^OK`, want: []string{`^\* 1 FETCH \(MODSEQ \(\d+\)\)$`}, never: []string{`FLAGS`}},
		{name: "store replace", cmd: `STORE 1 FLAGS (\Seen $Label1)`, tagged: `^OK`, want: []string{`^\* 1 FETCH \(FLAGS \(\\Seen \$Label1\) MODSEQ`}},
		{name: "uid store", cmd: `UID STORE 2 +FLAGS (\Answered)`, tagged: `^OK`, want: []string{`^\* 2 FETCH \(UID 2 FLAGS \(\\Answered\) MODSEQ \(\d+\)\)$`}},
		{name: "store unchangedsince fails", cmd: `STORE 1:2 (UNCHANGEDSINCE 1) +FLAGS (\Seen)`, tagged: `^OK \[MODIFIED 1:2\]`},
		{name: "store unchangedsince 0", cmd: `UID STORE 2 (UNCHANGEDSINCE 0) +FLAGS (\Seen)`, tagged: `^OK \[MODIFIED 2\]`},
		{name: "store unchangedsince succeeds", cmd: `STORE 2 (UNCHANGEDSINCE 99999) +FLAGS (\Flagged)`, tagged: `^OK$|^OK [^\[]`,
			want: []string{`^\* 2 FETCH \(FLAGS \(\\Answered \\Flagged\) MODSEQ`}},
		{name: "store bad flag", cmd: `STORE 1 +FLAGS (\Bogus*)`, tagged: `^BAD`},
		{name: "fetch changedsince none", cmd: "FETCH 1:* (FLAGS) (CHANGEDSINCE 99999)", tagged: `^OK`, never: []string{`FETCH`}},
		{name: "fetch changedsince some", cmd: "FETCH 1:* (FLAGS) (CHANGEDSINCE 1)", tagged: `^OK`,
			want: []string{`^\* 1 FETCH \(FLAGS .* MODSEQ`, `^\* 2 FETCH \(FLAGS .* MODSEQ`}},
		{name: "status highestmodseq", cmd: "STATUS INBOX (HIGHESTMODSEQ)", tagged: `^OK`, want: []string{`^\* STATUS INBOX \(HIGHESTMODSEQ \d+\)$`}},

		// SEARCH.
		{name: "search from", cmd: `SEARCH FROM "bob"`, tagged: `^OK`, want: []string{`^\* SEARCH 1$`}},
		{name: "search encoded subject", cmd: `SEARCH SUBJECT rapport`, tagged: `^OK`, want: []string{`^\* SEARCH 2$`}},
		{name: "search header", cmd: `SEARCH HEADER Message-ID lunch-1`, tagged: `^OK`, want: []string{`^\* SEARCH 1$`}},
		{name: "search body", cmd: `SEARCH BODY noon`, tagged: `^OK`, want: []string{`^\* SEARCH 1$`}},
		{name: "search decoded body", cmd: fmt.Sprintf("SEARCH CHARSET UTF-8 BODY {%d+}\r\n%s", len(fevrier), fevrier), tagged: `^OK`, want: []string{`^\* SEARCH 2$`}},
		{name: "search text in header", cmd: `SEARCH TEXT carol`, tagged: `^OK`, want: []string{`^\* SEARCH 2$`}},
		{name: "search text no match", cmd: `SEARCH TEXT zebra`, tagged: `^OK`, want: []string{`^\* SEARCH$`}},
		{name: "search sent since", cmd: `SEARCH SENTSINCE 6-Mar-2024`, tagged: `^OK`, want: []string{`^\* SEARCH 2$`}},
		{name: "search sent on", cmd: `SEARCH SENTON 5-Mar-2024`, tagged: `^OK`, want: []string{`^\* SEARCH 1$`}},
		{name: "search before", cmd: `SEARCH BEFORE 6-Mar-2024`, tagged: `^OK`, want: []string{`^\* SEARCH 1 2$`}},
		{name: "search since", cmd: `SEARCH SINCE 6-Mar-2024`, tagged: `^OK`, want: []string{`^\* SEARCH$`}},
		{name: "search flags", cmd: `SEARCH SEEN UNANSWERED`, tagged: `^OK`, want: []string{`^\* SEARCH 1$`}},
		{name: "search keyword", cmd: `SEARCH KEYWORD $Label1`, tagged: `^OK`, want: []string{`^\* SEARCH 1$`}},
		{name: "search unkeyword", cmd: `SEARCH UNKEYWORD $Label1`, tagged: `^OK`, want: []string{`^\* SEARCH 2$`}},
		{name: "search new", cmd: `SEARCH NEW`, tagged: `^OK`, want: []string{`^\* SEARCH$`}},
		{name: "search size", cmd: `SEARCH LARGER 300 SMALLER 100000`, tagged: `^OK`, want: []string{`^\* SEARCH 2$`}},
		{name: "search uid", cmd: `SEARCH UID 2:*`, tagged: `^OK`, want: []string{`^\* SEARCH 2$`}},
		{name: "search seq", cmd: `SEARCH 2`, tagged: `^OK`, want: []string{`^\* SEARCH 2$`}},
		{name: "search not", cmd: `SEARCH NOT FROM bob`, tagged: `^OK`, want: []string{`^\* SEARCH 2$`}},
		{name: "search or", cmd: `SEARCH OR FROM bob FROM carol`, tagged: `^OK`, want: []string{`^\* SEARCH 1 2$`}},
		{name: "search nested", cmd: `SEARCH (OR (FROM bob) (NOT ANSWERED)) ALL`, tagged: `^OK`, want: []string{`^\* SEARCH 1$`}},
		{name: "uid search", cmd: `UID SEARCH FLAGGED`, tagged: `^OK`, want: []string{`^\* SEARCH 2$`}},
		{name: "search modseq", cmd: `SEARCH MODSEQ 1`, tagged: `^OK`, want: []string{`^\* SEARCH 1 2 \(MODSEQ \d+\)$`}},
		{name: "search modseq entry", cmd: `SEARCH MODSEQ "/flags/\\Seen" all 1`, tagged: `^OK`, want: []string{`^\* SEARCH 1 2 \(MODSEQ \d+\)$`}},
		{name: "esearch", cmd: `SEARCH RETURN (MIN MAX COUNT) ALL`, tagged: `^OK`, want: []string{`^\* ESEARCH \(TAG "[^"]+"\) MIN 1 MAX 2 COUNT 2$`}},
		{name: "searchres save", cmd: `UID SEARCH RETURN (SAVE) FROM carol`, tagged: `^OK`},
		{name: "searchres use", cmd: `FETCH $ UID`, tagged: `^OK`, want: []string{`^\* 2 FETCH \(UID 2\)$`}, never: []string{`^\* 1 FETCH`}},
		{name: "search bad charset", cmd: `SEARCH CHARSET KOI8-R ALL`, tagged: `^NO \[BADCHARSET\]`},

		// COPY, MOVE, EXPUNGE.
		{name: "copy", cmd: "COPY 1 Archive", tagged: `^OK \[COPYUID \d+ 1 1\]`},
		{name: "copy to missing", cmd: "COPY 1 Nope", tagged: `^NO \[TRYCREATE\]`},
		{name: "copied", cmd: "STATUS Archive (MESSAGES)", tagged: `^OK`, want: []string{`\(MESSAGES 1\)`}},
		{name: "enable", cmd: "ENABLE CONDSTORE", tagged: `^OK`, want: []string{`^\* ENABLED CONDSTORE$`}},
		{name: "move", cmd: "MOVE 2 Trash", tagged: `^OK`, want: []string{`^\* OK \[COPYUID \d+ 2 1\]`, `^\* 2 EXPUNGE$`}},
		{name: "moved", cmd: "STATUS Trash (MESSAGES)", tagged: `^OK`, want: []string{`\(MESSAGES 1\)`}},
		{name: "append while selected", cmd: appendCmd("INBOX", `(\Deleted) `, plainMsg), tagged: `^OK \[APPENDUID \d+ 3\]`,
			want: []string{`^\* 2 EXISTS$`}},
		{name: "append another", cmd: appendCmd("INBOX", `(\Deleted) `, plainMsg), tagged: `^OK \[APPENDUID \d+ 4\]`, want: []string{`^\* 3 EXISTS$`}},
		{name: "uid expunge", cmd: "UID EXPUNGE 3", tagged: `^OK`, want: []string{`^\* 2 EXPUNGE$`}, never: []string{`^\* 3 EXPUNGE`}},
		{name: "expunge", cmd: "EXPUNGE", tagged: `^OK`, want: []string{`^\* 2 EXPUNGE$`}},
		{name: "uid move", cmd: "UID MOVE 1 Junk", tagged: `^OK`, want: []string{`^\* OK \[COPYUID \d+ 1 1\]`, `^\* 1 EXPUNGE$`}},

		// EXAMINE, UNSELECT, CLOSE.
		{name: "examine", cmd: "EXAMINE Archive", tagged: `^OK \[READ-ONLY\]`, want: []string{`^\* OK \[CLOSED\]`, `^\* 1 EXISTS$`}},
		{name: "store read-only", cmd: `STORE 1 +FLAGS (\Deleted)`, tagged: `^NO`},
		{name: "fetch read-only keeps unseen", cmd: "FETCH 1 (BODY[TEXT] FLAGS)", tagged: `^OK`, never: []string{`\\Seen \\Seen`}},
		{name: "unselect", cmd: "UNSELECT", tagged: `^OK`},
		{name: "fetch unselected", cmd: "FETCH 1 FLAGS", tagged: `^BAD`},
		{name: "select archive", cmd: "SELECT Archive", tagged: `^OK \[READ-WRITE\]`},
		{name: "flag for close", cmd: `STORE 1 +FLAGS.SILENT (\Deleted)`, tagged: `^OK`},
		{name: "close expunges silently", cmd: "CLOSE", tagged: `^OK`, never: []string{`EXPUNGE`}},
		{name: "closed", cmd: "STATUS Archive (MESSAGES)", tagged: `^OK`, want: []string{`\(MESSAGES 0\)`}},

		// IMAP4rev2.
		{name: "enable imap4rev2", cmd: "ENABLE IMAP4rev2", tagged: `^OK`, want: []string{`^\* ENABLED IMAP4rev2$`}},
		{name: "rev2 select has no recent", cmd: "SELECT Drafts", tagged: `^OK`, never: []string{`RECENT`}},
		{name: "rev2 search is esearch", cmd: "SEARCH ALL", tagged: `^OK`, want: []string{`^\* ESEARCH \(TAG "[^"]+"\) ALL 1$`}},
		{name: "rev2 nonexistent parent", do: func() {
			if err := h.store.CreateMailbox(testUser, "Lone/Child", ""); err != nil {
				t.Fatal(err)
			}
		}, cmd: `LIST "" "Lone*"`, tagged: `^OK`, want: []string{`^\* LIST \(\\NonExistent \\HasChildren\) "/" "?Lone"?$`}},

		{name: "rev2 utf-8 names", cmd: "CREATE \"\u00c4rger\"", tagged: `^OK`},
		{name: "rev2 utf-8 list", cmd: `LIST "" "*rger"`, tagged: `^OK`, want: []string{"^\\* LIST \\(.*\\) \"/\" \"\u00c4rger\"$"}},
		{name: "noop", cmd: "NOOP", tagged: `^OK`},
		{name: "check", cmd: "CHECK", tagged: `^OK`},
		{name: "logout", cmd: "LOGOUT", tagged: `^OK`, want: []string{`^\* BYE`}},
	}

	for i, st := range steps {
		if st.do != nil {
			st.do()
		}
		tag := fmt.Sprintf("c%03d", i)
		untagged, tagged := rc.cmd(tag, st.cmd)
		tagged = strings.TrimPrefix(tagged, tag+" ")
		if !regexp.MustCompile(st.tagged).MatchString(tagged) {
			t.Errorf("%s: %s\n  tagged %q, want %s\n  untagged %q", st.name, firstLine(st.cmd), tagged, st.tagged, untagged)
			continue
		}
		for _, w := range st.want {
			if !anyMatch(w, untagged) {
				t.Errorf("%s: %s\n  no untagged line matches %s\n  untagged %q", st.name, firstLine(st.cmd), w, untagged)
			}
		}
		for _, n := range st.never {
			if anyMatch(n, untagged) {
				t.Errorf("%s: %s\n  an untagged line matches %s\n  untagged %q", st.name, firstLine(st.cmd), n, untagged)
			}
		}
	}
}

func anyMatch(re string, lines []string) bool {
	r := regexp.MustCompile(re)
	for _, l := range lines {
		if r.MatchString(l) {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}
