package node

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"clustermail/cluster"
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

	TLSCert         string
	TLSKey          string
	SubmissionAddr  string // "" disables
	SubmissionsAddr string // "" disables
	InsecureAuth    bool
	IMAPAddr        string // "" disables
	IMAPSAddr       string
	POP3Addr        string
	POP3SAddr       string

	// Between nodes: mutual TLS on the cluster port (all three or none),
	// the gossip key (base64; seeds the keyring kept in the data dir) and
	// the file holding the admin API's bearer token.
	ClusterCA    string
	ClusterCert  string
	ClusterKey   string
	GossipKey    string
	APITokenFile string

	DNS           string // resolver host:port; "" = the system's
	OutboundPort  int
	RetrySchedule string
	DelayWarning  time.Duration
	QueueLifetime time.Duration
	ReassignAfter time.Duration

	// Inbound SPF, DKIM and DMARC checks (mailauth.go).
	MailAuth        bool
	MailAuthTimeout time.Duration // DNS budget per message
	MailAuthTrusted []string      // CIDR networks never refused or junked
	MailAuthID      string        // authserv-id; "" = Hostname

	MaxMessageBytes int64
	MinFreeSpace    int64
	MaxRecipients   int
	MaxLineLength   int
	SMTPTimeout     time.Duration
	MaxConnections  int
	DeliveryWorkers int

	MaxConnectionsPerIP int // per client address, on every mail listener; 0: no limit
	MaxMessagesPerHour  int // per authenticated sender, counted on each node; 0: no limit

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
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if n := countSet(c.ClusterCA, c.ClusterCert, c.ClusterKey); n != 0 && n != 3 {
		errs = append(errs, errors.New("--cluster-ca, --cluster-cert and --cluster-key go together (clustermail tls creates them)"))
	}
	if c.GossipKey != "" {
		if _, err := cluster.DecodeGossipKey(c.GossipKey); err != nil {
			errs = append(errs, fmt.Errorf("--gossip-key: %w", err))
		}
	}
	if c.SubmissionsAddr != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--submissions-addr (implicit TLS) needs --tls-cert and --tls-key"))
	}
	for flag, a := range map[string]string{"--imaps-addr": c.IMAPSAddr, "--pop3s-addr": c.POP3SAddr} {
		if a != "" && c.TLSCert == "" {
			errs = append(errs, fmt.Errorf("%s (implicit TLS) needs --tls-cert and --tls-key", flag))
		}
	}
	for flag, a := range map[string]string{"--imap-addr": c.IMAPAddr, "--pop3-addr": c.POP3Addr} {
		if a != "" && c.TLSCert == "" && !c.InsecureAuth {
			errs = append(errs, fmt.Errorf("%s needs --tls-cert and --tls-key, since logins are accepted only over TLS (or --insecure-auth, for loopback tests only)", flag))
		}
	}
	if c.SubmissionAddr != "" && c.TLSCert == "" && !c.InsecureAuth {
		errs = append(errs, errors.New("--submission-addr needs --tls-cert and --tls-key, since AUTH is offered only over TLS (or --insecure-auth, for loopback tests only)"))
	}
	if c.OutboundPort <= 0 || c.OutboundPort > 65535 {
		errs = append(errs, fmt.Errorf("--outbound-port %d: want 1-65535", c.OutboundPort))
	}
	if c.QueueLifetime <= 0 || c.DelayWarning <= 0 || c.DelayWarning >= c.QueueLifetime {
		errs = append(errs, errors.New("--delay-warning must be positive and shorter than --queue-lifetime"))
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, errors.New("--bootstrap-expect must not be negative"))
	}
	if c.BootstrapExpect == 0 && len(c.Join) == 0 {
		errs = append(errs, errors.New("give --bootstrap-expect N to form a new cluster, or --join to join one"))
	}
	if c.MaxConnectionsPerIP < 0 || c.MaxMessagesPerHour < 0 {
		errs = append(errs, errors.New("--max-connections-per-ip and --max-messages-per-hour must not be negative (0 turns them off)"))
	}
	if err := c.validateMailAuth(); err != nil {
		errs = append(errs, err)
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

func countSet(vals ...string) int {
	n := 0
	for _, v := range vals {
		if v != "" {
			n++
		}
	}
	return n
}
