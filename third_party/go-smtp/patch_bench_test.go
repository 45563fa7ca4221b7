package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"testing"
)

// BenchmarkDataReader reads a message through dataReader and
// lineLimitReader as a server session does (bufio over the line limit over
// the connection), for 1 KiB and 32 KiB messages in lines of 80 octets.
func BenchmarkDataReader(b *testing.B) {
	const line = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\r\n"
	for _, size := range []int{1 << 10, 32 << 10} {
		msg := bytes.Repeat([]byte(line), size/len(line))
		msg = append(msg, ".\r\n"...)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			src := bytes.NewReader(msg)
			br := bufio.NewReader(nil)
			var out bytes.Buffer
			for b.Loop() {
				src.Reset(msg)
				br.Reset(&lineLimitReader{R: src, LineLimit: 2000})
				out.Reset()
				if _, err := io.Copy(&out, &dataReader{r: br}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
