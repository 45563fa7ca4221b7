// Command gencert writes a self-signed TLS certificate and key (cert.pem,
// key.pem) for the docker-compose cluster, for machines without openssl:
//
//	go run ./deploy/gencert -dir deploy/compose-tls localhost 127.0.0.1 n1.clustermail.test ...
//
// The key is made readable by everyone (0644) because the containers run as
// an unprivileged user that does not own the file. That is acceptable for a
// throw-away test certificate only: never do it with a real key.
package main

import (
	"flag"
	"fmt"
	"os"

	"clustermail/certs"
)

func main() {
	dir := flag.String("dir", "deploy/compose-tls", "where to write cert.pem and key.pem")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: gencert [-dir DIR] HOST...")
		flag.PrintDefaults()
	}
	flag.Parse()
	hosts := flag.Args()
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	certFile, keyFile, err := certs.WriteSelfSigned(*dir, hosts)
	if err == nil {
		err = os.Chmod(keyFile, 0o644)
	}
	if err == nil {
		err = os.Chmod(*dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gencert:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", certFile, "and", keyFile)
}
