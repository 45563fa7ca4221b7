package node

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Config is everything one node needs to run. The command line, a config
// file and CLUSTERMAIL_* variables all fill this one struct.
type Config struct {
	Name            string
	DataDir         string
	GossipAddr      string
	RaftAddr        string // the cluster address: Raft and all node-to-node traffic
	APIAddr         string
	SMTPAddr        string
	Join            []string
	BootstrapExpect int
	Hostname        string
	DeadServerGrace time.Duration

	RaftSnapshotThreshold uint64 // 0: Raft's default
	RaftTrailingLogs      uint64
	RaftSnapshotInterval  time.Duration

	MaxMessageBytes int64
	MaxRecipients   int
	MaxLineLength   int
	SMTPTimeout     time.Duration
	MaxConnections  int
	DeliveryWorkers int

	LogFormat string // text or json
	LogLevel  string // debug, info, warn, error
}

// Version is the software version nodes gossip to each other.
var Version = "0.1.0-dev"

// Validate reports the first thing wrong with the configuration, phrased
// for the operator who must fix it.
func (c *Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("--name is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	for flag, a := range map[string]string{"--gossip-addr": c.GossipAddr, "--raft-addr": c.RaftAddr, "--api-addr": c.APIAddr, "--smtp-addr": c.SMTPAddr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port", flag, a))
		}
	}
	if h, _, err := net.SplitHostPort(c.RaftAddr); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
		errs = append(errs, fmt.Errorf("--raft-addr %q: other nodes dial this address, so it must name this host (not 0.0.0.0)", c.RaftAddr))
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, errors.New("--bootstrap-expect must not be negative"))
	}
	if c.BootstrapExpect == 0 && len(c.Join) == 0 {
		errs = append(errs, errors.New("give --bootstrap-expect N to form a new cluster, or --join to join one"))
	}
	if c.MaxMessageBytes <= 0 || c.MaxRecipients <= 0 || c.MaxLineLength < 100 {
		errs = append(errs, errors.New("limits must be positive (max-message-size, max-recipients, max-line-length >= 100)"))
	}
	switch strings.ToLower(c.LogFormat) {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.LogFormat))
	}
	return errors.Join(errs...)
}
