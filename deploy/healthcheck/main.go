// Command healthcheck probes a clustermail node's health endpoint and exits
// 0 when it answers 200, 1 otherwise. It exists for the scratch container
// image, which has no shell and no curl:
//
//	HEALTHCHECK CMD ["/healthcheck"]                                        # /v1/health/ready on 127.0.0.1:8080
//	healthcheck [http://127.0.0.1:8080/v1/health/live]                      # any other URL
//
// It speaks just enough HTTP/1.0 to read the status line, so it stays a
// fraction of the size of a net/http client.
package main

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

const defaultURL = "http://127.0.0.1:8080/v1/health/ready"

func main() {
	target := defaultURL
	if len(os.Args) > 2 {
		fmt.Fprintln(os.Stderr, "usage: healthcheck [URL]  (default "+defaultURL+")")
		os.Exit(2)
	}
	if len(os.Args) == 2 {
		target = os.Args[1]
	}
	if err := probe(target, 3*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		os.Exit(1)
	}
}

// probe GETs target and returns nil for a 200 reply.
func probe(target string, timeout time.Duration) error {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q: want an http://host:port/path URL", target)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	c, err := net.DialTimeout("tcp", host, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: clustermail-healthcheck\r\n\r\n", u.RequestURI(), u.Host); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the reply: %w", err)
	}
	// "HTTP/1.1 200 OK"
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return fmt.Errorf("not an HTTP reply: %q", strings.TrimSpace(line))
	}
	if f[1] != "200" {
		return fmt.Errorf("%s answered %s", target, strings.TrimSpace(strings.Join(f[1:], " ")))
	}
	return nil
}
