package main

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"clustermail/certs"
)

// newTLSCmd returns "clustermail tls": the cluster's own CA and the node
// certificates of the cluster port's mutual TLS, as "consul tls" makes them.
func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Create the cluster CA and node certificates for the cluster port's mutual TLS",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	ca := &cobra.Command{
		Use:   "ca",
		Short: "Manage the cluster CA",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var caDir string
	var caDays int
	caCreate := &cobra.Command{
		Use:   "create",
		Short: "Create a new cluster CA: " + certs.CAFile + " and " + certs.CAKeyFile,
		Long: "Create a new CA (ECDSA P-256) that signs the certificates of the cluster's\n" +
			"nodes. Every certificate it signs is trusted as a member of the cluster, so\n" +
			"use it for this cluster only, and keep the key file off the nodes.",
		Example: "  clustermail tls ca create\n  clustermail tls ca create --dir /etc/clustermail/ca --days 3650",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cf, kf, err := certs.CreateCA(caDir, caDays)
			if err != nil {
				return fmt.Errorf("tls ca create: %w", err)
			}
			fmt.Fprintf(cmdOut(cmd), "==> Saved %s\n==> Saved %s\n", cf, kf)
			return nil
		},
	}
	caCreate.Flags().StringVar(&caDir, "dir", ".", "directory to write the CA files into")
	caCreate.Flags().IntVar(&caDays, "days", 1825, "validity of the CA in days")
	ca.AddCommand(caCreate)

	cert := &cobra.Command{
		Use:   "cert",
		Short: "Manage node certificates",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var nc certs.NodeCert
	var ips []net.IP
	var certDir, caFile, caKey string
	certCreate := &cobra.Command{
		Use:   "create --node NAME",
		Short: "Create NAME.pem and NAME-key.pem, signed by the cluster CA",
		Long: "Create a node certificate signed by the cluster CA, valid both as server and\n" +
			"as client certificate on the cluster port, with the names NAME, localhost,\n" +
			"127.0.0.1 and ::1 plus those given with --dns and --ip. Give each node its\n" +
			"own certificate and start it with --cluster-ca, --cluster-cert and --cluster-key.",
		Example: "  clustermail tls cert create --node n1\n" +
			"  clustermail tls cert create --node n2 --dns mail2.example.com --ip 10.0.0.2 \\\n" +
			"    --ca /etc/clustermail/ca/" + certs.CAFile + " --ca-key /etc/clustermail/ca/" + certs.CAKeyFile,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nc.Name == "" {
				return fmt.Errorf("tls cert create: --node NAME is required\nusage: %s", cmd.UseLine())
			}
			nc.IPs = ips
			cf, kf, err := certs.CreateNodeCert(certDir, caFile, caKey, nc)
			if err != nil {
				return fmt.Errorf("tls cert create: %w", err)
			}
			fmt.Fprintf(cmdOut(cmd), "==> Using %s and %s\n==> Saved %s\n==> Saved %s\n", caFile, caKey, cf, kf)
			return nil
		},
	}
	f := certCreate.Flags()
	f.StringVar(&nc.Name, "node", "", "node name (as in clustermail server --name); names the files")
	f.StringSliceVar(&nc.DNS, "dns", nil, "extra DNS names (comma-separated or repeated)")
	f.IPSliceVar(&ips, "ip", nil, "extra IP addresses (comma-separated or repeated)")
	f.IntVar(&nc.Days, "days", 365, "validity in days (never beyond the CA's)")
	f.StringVar(&caFile, "ca", certs.CAFile, "CA certificate")
	f.StringVar(&caKey, "ca-key", certs.CAKeyFile, "CA private key")
	f.StringVar(&certDir, "dir", ".", "directory to write the certificate and key into")
	cert.AddCommand(certCreate)

	cmd.AddCommand(ca, cert)
	return cmd
}
