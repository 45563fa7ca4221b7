package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"clustermail/node"
)

// serverFlags binds `clustermail server`'s flags to a node.Config.
func serverFlags(fs *pflag.FlagSet, c *node.Config) {
	host, _ := os.Hostname()
	// Defaults of the size flags, set before the flags so help shows them.
	c.MaxMessageBytes = 25 << 20
	c.MinFreeSpace = 100 << 20
	fs.StringVar(&c.Name, "name", host, "node name, unique in the cluster")
	fs.StringVar(&c.DataDir, "data-dir", "/var/lib/clustermail", "where this node keeps its data")
	fs.StringVar(&c.GossipAddr, "gossip-addr", "127.0.0.1:7946", "gossip (memberlist) address, bound and advertised")
	fs.StringVar(&c.RaftAddr, "raft-addr", "127.0.0.1:8300", "cluster address: Raft and all node-to-node traffic; other nodes dial it")
	fs.StringVar(&c.APIAddr, "api-addr", "127.0.0.1:8080", "admin HTTP API address")
	fs.StringVar(&c.SMTPAddr, "smtp-addr", ":25", "inbound SMTP address")
	fs.StringSliceVar(&c.Join, "join", nil, "gossip addresses of other nodes (comma-separated); retried until one answers")
	fs.IntVar(&c.BootstrapExpect, "bootstrap-expect", 0, "form a new cluster once this many nodes see each other")
	fs.StringVar(&c.Hostname, "hostname", host, "host name used in the SMTP greeting and Received: headers")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate (PEM); reloaded on SIGHUP or when the file changes")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key (PEM)")
	fs.StringVar(&c.SubmissionAddr, "submission-addr", "", "submission with STARTTLS and AUTH (usually :587); empty disables it")
	fs.StringVar(&c.SubmissionsAddr, "submissions-addr", "", "submission over implicit TLS (usually :465); empty disables it")
	fs.StringVar(&c.IMAPAddr, "imap-addr", "", "IMAP with STARTTLS (usually :143); empty disables it")
	fs.StringVar(&c.IMAPSAddr, "imaps-addr", "", "IMAP over implicit TLS (usually :993); empty disables it")
	fs.StringVar(&c.POP3Addr, "pop3-addr", "", "POP3 with STLS (usually :110); empty disables it")
	fs.StringVar(&c.POP3SAddr, "pop3s-addr", "", "POP3 over implicit TLS (usually :995); empty disables it")
	fs.StringVar(&c.ClusterCA, "cluster-ca", "", "CA certificate (PEM) of the cluster port's mutual TLS; with --cluster-cert and --cluster-key, all node-to-node traffic is TLS 1.3 and peers must present a certificate of this CA")
	fs.StringVar(&c.ClusterCert, "cluster-cert", "", "this node's certificate (PEM) for the cluster port, signed by --cluster-ca; reloaded when the file changes")
	fs.StringVar(&c.ClusterKey, "cluster-key", "", "private key (PEM) of --cluster-cert")
	fs.StringVar(&c.GossipKey, "gossip-key", "", "base64 key (16, 24 or 32 bytes) encrypting gossip; seeds the keyring kept in the data dir, which wins afterwards (clustermail keygen makes one)")
	fs.StringVar(&c.APITokenFile, "api-token-file", "", "file holding the bearer token the admin API requires (all but /v1/health/*)")
	fs.BoolVar(&c.InsecureAuth, "insecure-auth", false, "allow AUTH without TLS (loopback tests only: passwords travel in clear)")
	fs.StringVar(&c.DNS, "dns", "", "DNS resolver for outbound delivery, host:port (default: the system's, from /etc/resolv.conf)")
	fs.BoolVar(&c.MailAuth, "mail-auth", true, "check SPF, DKIM and DMARC of mail arriving on --smtp-addr, add an Authentication-Results header, and apply the From domain's DMARC policy (reject, or deliver to Junk)")
	fs.DurationVar(&c.MailAuthTimeout, "mail-auth-timeout", 3*time.Second, "DNS time allowed to the checks of one message; what is still unanswered then is a temperror, and never refuses mail")
	fs.StringVar(&c.MailAuthID, "mail-auth-id", "", "name of this server in the Authentication-Results header (default: --hostname); give all nodes the same one (such as your domain) so a header forged with any node's name is removed")
	fs.StringSliceVar(&c.MailAuthTrusted, "mail-auth-trusted", []string{"127.0.0.0/8", "::1/128"}, "client networks (CIDR, comma-separated) whose mail is checked and labelled but never refused nor sent to Junk by DMARC; empty trusts none")
	fs.IntVar(&c.OutboundPort, "outbound-port", 25, "port of remote mail servers (change only for tests)")
	fs.StringVar(&c.RetrySchedule, "retry-schedule", "1m,5m,15m,30m,1h", "waits between delivery attempts; the last one repeats")
	fs.DurationVar(&c.DelayWarning, "delay-warning", 4*time.Hour, "tell the sender once when a message is still undelivered after this long")
	fs.DurationVar(&c.QueueLifetime, "queue-lifetime", 5*24*time.Hour, "give up and bounce a message undelivered after this long")
	fs.DurationVar(&c.ReassignAfter, "reassign-after", time.Minute, "a dead node's outbound queue moves to a live node after this long")
	fs.DurationVar(&c.DeadServerGrace, "dead-server-grace", 24*time.Hour, "how long a dead node stays a voter before the leader removes it (never below quorum)")
	fs.Var(sizeFlag{&c.MaxMessageBytes}, "max-message-size", "largest message accepted (e.g. 25M)")
	fs.Var(sizeFlag{&c.MinFreeSpace}, "min-free-space", "refuse mail (452 4.3.1) when the data dir's disk has less free space than this, plus 1.5 times the announced message size")
	fs.IntVar(&c.MaxRecipients, "max-recipients", 100, "recipients per message")
	fs.IntVar(&c.MaxLineLength, "max-line-length", 1000, "longest command or message line, CRLF included (RFC 5321: 1000)")
	fs.DurationVar(&c.SMTPTimeout, "smtp-timeout", 5*time.Minute, "idle time allowed for one SMTP command or data line")
	fs.IntVar(&c.MaxConnections, "max-connections", 1000, "concurrent inbound SMTP connections")
	fs.IntVar(&c.DeliveryWorkers, "delivery-workers", 32, "concurrent local deliveries on this node")
	fs.IntVar(&c.MaxConnectionsPerIP, "max-connections-per-ip", 64, "concurrent connections from one client address to each SMTP, submission, IMAP and POP3 listener, loopback included; 0 = unlimited")
	fs.IntVar(&c.MaxMessagesPerHour, "max-messages-per-hour", 1000, "messages one authenticated account may submit per hour, counted on each node; 0 = unlimited")
	fs.Uint64Var(&c.RaftSnapshotThreshold, "raft-snapshot-threshold", 8192, "Raft log entries between snapshots")
	fs.Uint64Var(&c.RaftTrailingLogs, "raft-trailing-logs", 10240, "Raft log entries kept after a snapshot, so a slightly behind node catches up without one")
	fs.DurationVar(&c.RaftSnapshotInterval, "raft-snapshot-interval", 2*time.Minute, "how often Raft checks whether a snapshot is due")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")

}

type sizeFlag struct{ p *int64 }

func (s sizeFlag) String() string {
	if s.p == nil {
		return ""
	}
	return formatSize(*s.p)
}
func (s sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s.p = n
	return nil
}
func (sizeFlag) Type() string { return "size" }

func newServerCmd() *cobra.Command {
	var cfg node.Config
	var configFile string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run one node",
		Long: `Run one clustermail node.

Every flag can also be set in a config file (--config, YAML, the flag names
as keys) or as an environment variable CLUSTERMAIL_<FLAG> (upper case, "-"
as "_", e.g. CLUSTERMAIL_DATA_DIR). A flag on the command line wins over the
environment, which wins over the file.

SIGTERM makes the node leave the cluster gracefully (it is removed from the
Raft configuration); SIGINT stops it without leaving, as for a restart.`,
		Example: `  clustermail server --name n1 --data-dir /var/lib/clustermail \
    --gossip-addr 10.0.0.1:7946 --raft-addr 10.0.0.1:8300 --api-addr 127.0.0.1:8080 \
    --smtp-addr :25 --bootstrap-expect 3 --join 10.0.0.2:7946,10.0.0.3:7946`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfigSources(cmd.Flags(), configFile, os.LookupEnv); err != nil {
				return err
			}
			return runServer(cfg)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "YAML config file with the same keys as the flags")
	serverFlags(cmd.Flags(), &cfg)
	return cmd
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if strings.EqualFold(format, "json") {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}

func runServer(cfg node.Config) error {
	log, err := newLogger(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	log = log.With("node", cfg.Name)
	n, err := node.Start(cfg, log)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: reloading the TLS certificate")
			n.ReloadTLS()
			continue
		case s := <-sig:
			if s == syscall.SIGTERM {
				log.Info("SIGTERM: leaving the cluster")
				go n.Leave()
			} else {
				log.Info("interrupted: stopping without leaving the cluster")
				go n.Stop()
			}
		case <-n.LeaveRequested():
			log.Info("leave requested through the API")
			go n.Leave()
		}
		break
	}
	select {
	case <-n.Done():
	case <-sig:
		log.Warn("second signal: exiting at once")
		os.Exit(1)
	}
	return nil
}
