package smtpd

import (
	"bytes"
	"fmt"
	"testing"
)

// benchBody returns a message of size bytes in lines of 78 octets plus
// CRLF, as DATA delivers it.
func benchBody(size int) []byte {
	const line = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\r\n"
	b := make([]byte, 0, size+len(line))
	for len(b) < size {
		b = append(b, line...)
	}
	return b[:size-size%len(line)]
}

// BenchmarkStrictReader measures the CRLF check on DATA the way Data uses
// it (buf.ReadFrom over the reader), against the same copy without the
// check ("plain"), for 1 KiB and 32 KiB messages.
func BenchmarkStrictReader(b *testing.B) {
	for _, size := range []int{1 << 10, 32 << 10} {
		body := benchBody(size)
		var buf bytes.Buffer
		buf.Grow(size + 4096)
		for _, strict := range []bool{true, false} {
			name := fmt.Sprintf("%dKiB/strict", size>>10)
			if !strict {
				name = fmt.Sprintf("%dKiB/plain", size>>10)
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				r := bytes.NewReader(body)
				for b.Loop() {
					r.Reset(body)
					buf.Reset()
					var err error
					if strict {
						_, err = buf.ReadFrom(&strictReader{r: r, max: 1000})
					} else {
						_, err = buf.ReadFrom(r)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
