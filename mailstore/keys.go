package mailstore

import "encoding/binary"

// Key layout. Every key starts with a one-byte table prefix, 0x80-0x87,
// so the store can share a node's database with other stores. Strings are
// encoded as uvarint length + bytes (prefix-free, so an account's keys never
// mix with another account's whose name shares a prefix); integers are
// fixed-width big-endian, so numeric order is key order.
//
//	0x80 name                               meta: schema version, UIDVALIDITY floor
//	0x81 account                            accountRecord (ids, usage)
//	0x82 account name                       mailbox id (name index)
//	0x83 account u64(mailboxID)             mailboxRecord
//	0x84 account u64(mailboxID) u32(uid)    messageRecord (metadata only)
//	0x85 account u64(bodyID) u32(chunk)     body bytes, ≤ bodyChunkSize each
//	0x86 account u64(bodyID)                body reference count
//	0x87 account key                        dedupRecord (Deliver idempotency)
//
// Messages refer to bodies by id, so COPY and MOVE never rewrite bodies and
// RENAME rewrites no message at all.
const (
	tableMeta    byte = 0x80
	tableAccount byte = 0x81
	tableName    byte = 0x82
	tableMailbox byte = 0x83
	tableMessage byte = 0x84
	tableBody    byte = 0x85
	tableBodyRef byte = 0x86
	tableDedup   byte = 0x87
)

// accountTables lists every table whose keys start with an account, i.e.
// everything DeleteAccount removes.
var accountTables = []byte{tableAccount, tableName, tableMailbox, tableMessage, tableBody, tableBodyRef, tableDedup}

// Meta key names.
const (
	metaVersion          = "version"
	metaUIDValidityFloor = "uidvalidity-floor"
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendUint64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
func appendUint32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func decodeUint64(b []byte) uint64           { return binary.BigEndian.Uint64(b) }

func metaKey(name string) []byte { return append([]byte{tableMeta}, name...) }

// accountPrefix is the common prefix of all of account's keys in table.
func accountPrefix(table byte, account string) []byte {
	return appendString([]byte{table}, account)
}

func accountKey(account string) []byte { return accountPrefix(tableAccount, account) }

func nameKey(account, name string) []byte {
	return appendString(accountPrefix(tableName, account), name)
}

func mailboxKey(account string, id uint64) []byte {
	return appendUint64(accountPrefix(tableMailbox, account), id)
}

func messagePrefix(account string, mailbox uint64) []byte {
	return appendUint64(accountPrefix(tableMessage, account), mailbox)
}

func messageKey(account string, mailbox uint64, uid uint32) []byte {
	return appendUint32(messagePrefix(account, mailbox), uid)
}

// uidOfKey extracts the UID from a message key (its last four bytes).
func uidOfKey(key []byte) uint32 { return binary.BigEndian.Uint32(key[len(key)-4:]) }

// idOfKey extracts the trailing uint64 of a mailbox key.
func idOfKey(key []byte) uint64 { return binary.BigEndian.Uint64(key[len(key)-8:]) }

func bodyPrefix(account string, body uint64) []byte {
	return appendUint64(accountPrefix(tableBody, account), body)
}

func bodyChunkKey(account string, body uint64, chunk uint32) []byte {
	return appendUint32(bodyPrefix(account, body), chunk)
}

func bodyRefKey(account string, body uint64) []byte {
	return appendUint64(accountPrefix(tableBodyRef, account), body)
}

func dedupKey(account, key string) []byte {
	return appendString(accountPrefix(tableDedup, account), key)
}

// prefixEnd returns the smallest key greater than every key that starts
// with prefix, for use as an exclusive upper bound. Our prefixes always
// start with a table byte below 0xff, so the result is never empty.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
