package smtp

// Tests of the clustermail patch (see PATCHES.md): the fast paths of
// dataReader and lineLimitReader must give the same bytes and errors as the
// byte-by-byte loops they replace, kept here as the reference.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func refLineLimit(in []byte, limit int) error {
	cur := 0
	for _, chr := range in {
		if chr == '\n' {
			cur = 0
		}
		cur++
		if cur > limit {
			return ErrTooLongLine
		}
	}
	return nil
}

// refData is the unpatched dataReader state machine over all of in.
func refData(in []byte) ([]byte, error) {
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
		stateEOF
	)
	var out []byte
	state := stateBeginLine
	for _, c := range in {
		if state == stateEOF {
			break
		}
		switch state {
		case stateBeginLine:
			if c == '.' {
				state = stateDot
				continue
			}
			if c == '\r' {
				state = stateCR
				break
			}
			state = stateData
		case stateDot:
			if c == '\r' {
				state = stateDotCR
				continue
			}
			state = stateData
		case stateDotCR:
			if c == '\n' {
				state = stateEOF
				continue
			}
			state = stateData
		case stateCR:
			if c == '\n' {
				state = stateBeginLine
				break
			}
			state = stateData
		case stateData:
			if c == '\r' {
				state = stateCR
			}
		}
		out = append(out, c)
	}
	if state != stateEOF {
		return out, io.ErrUnexpectedEOF
	}
	return out, nil
}

func checkPatched(t *testing.T, in []byte, limit int) {
	t.Helper()
	// Through the line limit, in small reads as from a slow client.
	llr := &lineLimitReader{R: iotest.HalfReader(bytes.NewReader(in)), LineLimit: limit}
	got, err := io.ReadAll(llr)
	wantErr := refLineLimit(in, limit)
	if !errors.Is(err, wantErr) && !(err == nil && wantErr == nil) {
		t.Fatalf("line limit %d on %q: error %v, want %v", limit, in, err, wantErr)
	}
	if wantErr == nil && !bytes.Equal(got, in) {
		t.Fatalf("line limit %d on %q: got %q", limit, in, got)
	}

	// The data reader over a small bufio buffer, read in odd sizes.
	br := bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(in)), 16)
	dr := &dataReader{r: br}
	var out []byte
	buf := make([]byte, 7)
	for {
		k, err := dr.Read(buf)
		out = append(out, buf[:k]...)
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			want, werr := refData(in)
			if !bytes.Equal(out, want) || (err == nil) != (werr == nil) {
				t.Fatalf("data %q: got %q, %v; want %q, %v", in, out, err, want, werr)
			}
			return
		}
	}
}

func TestPatchedReaders(t *testing.T) {
	for _, in := range []string{
		"", "a\r\n.\r\n", "..dot\r\n.\r\n", "bare\rcr\r\n.\r\n", "bare\nlf\r\n.\r\n",
		"line\r\n.\r\nafter", "\r\n\r\n.\r\n", ".\r\n", "x.\r\n.x\r\n.\r\n",
		"0123456789012345678901234567890123456789\r\n.\r\n", "no end",
	} {
		for _, limit := range []int{1, 3, 10, 100} {
			checkPatched(t, []byte(in), limit)
		}
	}
}

func FuzzPatchedReaders(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\n..body\r\n.\r\n"), 8)
	f.Add([]byte("a\rb\nc\r\n.\r\n"), 2)
	f.Fuzz(func(t *testing.T, in []byte, limit int) {
		if limit <= 0 || limit > 1<<16 {
			return
		}
		checkPatched(t, in, limit)
	})
}
