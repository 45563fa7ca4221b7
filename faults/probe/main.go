// Command probe is the fault-injection suite's helper inside Docker. The
// clustermail image is FROM scratch (no shell, no curl), so whatever the
// suite must do next to a node runs as this static binary in its own small
// image (clustermail-faults-probe:dev), built by the suite:
//
//	probe hold                       wait for SIGTERM/SIGINT (keeps a volume mounted)
//	probe fill FILE                  write FILE until the file system is full
//	probe free FILE                  remove FILE
//	probe get URL                    GET URL, print the status and the body
//	probe smtp ADDR FROM RCPT[,RCPT] send the message read from stdin
//
// get and smtp are run with --network container:<node>, so they reach the
// node on 127.0.0.1 even while it is cut off from the compose network.
// smtp prints one line "REPLY <code> <stage> <text>", code 0 when no SMTP
// reply came (connection error, timeout).
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch cmd, args := os.Args[1], os.Args[2:]; {
	case cmd == "hold" && len(args) == 0:
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
	case cmd == "fill" && len(args) == 1:
		n, err := fill(args[0])
		fmt.Printf("wrote %d bytes to %s: %v\n", n, args[0], err)
		if !errors.Is(err, syscall.ENOSPC) {
			os.Exit(1)
		}
	case cmd == "free" && len(args) == 1:
		if err := os.Remove(args[0]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case cmd == "get" && len(args) == 1:
		if err := get(args[0]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case cmd == "smtp" && len(args) == 3:
		code, stage, text := send(args[0], args[1], strings.Split(args[2], ","), os.Stdin)
		fmt.Printf("REPLY %d %s %s\n", code, stage, strings.ReplaceAll(text, "\n", " "))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: probe hold | fill FILE | free FILE | get URL | smtp ADDR FROM RCPT[,RCPT] < message")
	os.Exit(2)
}

// fill appends to path until a write fails, with ever smaller writes so
// that the file system ends up full to the last block. The error is
// ENOSPC when it worked.
func fill(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	var last error
	for size := 1 << 20; size >= 512; size /= 4 {
		buf := make([]byte, size)
		for {
			n, err := f.Write(buf)
			total += int64(n)
			if err != nil {
				last = err
				break
			}
		}
	}
	_ = f.Sync()
	return total, last
}

func get(url string) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
	_, err = io.Copy(os.Stdout, io.LimitReader(resp.Body, 1<<20))
	return err
}

// send runs one SMTP transaction and returns the last reply: code 250 and
// stage "dot" when the message was accepted.
func send(addr, from string, rcpts []string, msg io.Reader) (code int, stage, text string) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "connect", err.Error()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(90 * time.Second))
	tp := textproto.NewConn(conn)
	reply := func(stage string, expect int) (int, string, string, bool) {
		code, text, err := tp.ReadResponse(expect)
		var te *textproto.Error
		switch {
		case errors.As(err, &te):
			return te.Code, stage, te.Msg, false
		case err != nil:
			return 0, stage, err.Error(), false
		}
		return code, stage, text, true
	}
	cmd := func(stage string, expect int, format string, args ...any) (int, string, string, bool) {
		if err := tp.PrintfLine(format, args...); err != nil {
			return 0, stage, err.Error(), false
		}
		return reply(stage, expect)
	}
	var ok bool
	if code, stage, text, ok = reply("greeting", 220); !ok {
		return
	}
	if code, stage, text, ok = cmd("ehlo", 250, "EHLO probe.faults.test"); !ok {
		return
	}
	if code, stage, text, ok = cmd("mail", 250, "MAIL FROM:<%s>", from); !ok {
		return
	}
	for _, r := range rcpts {
		if code, stage, text, ok = cmd("rcpt", 250, "RCPT TO:<%s>", r); !ok {
			return
		}
	}
	if code, stage, text, ok = cmd("data", 354, "DATA"); !ok {
		return
	}
	w := tp.DotWriter()
	if _, err := io.Copy(w, msg); err != nil {
		return 0, "body", err.Error()
	}
	if err := w.Close(); err != nil {
		return 0, "body", err.Error()
	}
	code, stage, text, _ = reply("dot", 250)
	_ = tp.PrintfLine("QUIT")
	return code, stage, text
}
