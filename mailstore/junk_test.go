package mailstore

import (
	"testing"
	"time"
)

// A DMARC-quarantined delivery lands in the mailbox with the \Junk
// special use, whatever its name, and re-creates Junk if it is gone.
func TestDeliverJunk(t *testing.T) {
	s, _ := openMem(t)
	junk := func(key string) []DeliveryResult {
		t.Helper()
		res, err := s.DeliverMany(alice, []Delivery{{Key: key, Date: time.Now(), Body: []byte("Subject: spam\r\n\r\nx\r\n"), Junk: true}})
		check(t, err)
		check(t, res[0].Err)
		return res
	}
	count := func(box string) int {
		t.Helper()
		return len(must[[]Message](t)(s.Messages(alice, box)))
	}

	// A new account: its defaults are created, the message goes to Junk.
	junk("Q1/" + alice)
	if count("Junk") != 1 || count(Inbox) != 0 {
		t.Fatalf("Junk %d, INBOX %d; want 1, 0", count("Junk"), count(Inbox))
	}
	if res := junk("Q1/" + alice); !res[0].Duplicate || count("Junk") != 1 {
		t.Fatalf("a repeated delivery was stored again")
	}

	// Renamed: the special use follows the mailbox.
	check(t, s.RenameMailbox(alice, "Junk", "Spam"))
	junk("Q2/" + alice)
	if count("Spam") != 2 {
		t.Fatalf("Spam holds %d messages, want 2", count("Spam"))
	}

	// Deleted: a new Junk with its special use.
	check(t, s.DeleteMailbox(alice, "Spam"))
	junk("Q3/" + alice)
	box, err := s.Mailbox(alice, "Junk")
	check(t, err)
	if box.SpecialUse != `\Junk` || box.Messages != 1 {
		t.Fatalf("re-created Junk: %+v", box)
	}
	// Ordinary deliveries still go to INBOX.
	_, _, err = s.Deliver(alice, "Q4/"+alice, time.Now(), []byte("ham"))
	check(t, err)
	if count(Inbox) != 1 {
		t.Fatalf("INBOX holds %d messages, want 1", count(Inbox))
	}
	checkInvariants(t, s, alice)
}
