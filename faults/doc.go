// Package faults is the fault-injection suite: it runs the docker-compose
// cluster (docker-compose.yml, under the project name clustermail-faults),
// keeps a writer sending numbered messages over SMTP, injects one fault per
// test (SIGKILL, network cut, rolling restart, full disk), then checks that
// every acknowledged message was delivered exactly once.
//
// The package has only tests. They skip unless CLUSTERMAIL_FAULTS is set and
// a Docker engine answers; see README.md here.
package faults
