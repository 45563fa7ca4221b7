// Command clustermail is the one binary of the cluster: "server" runs a node,
// "dev" runs a local three-node cluster, and every other command is an
// operator command that talks to a node's admin API.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	// CA roots for outbound TLS where the system has none (a scratch image).
	_ "golang.org/x/crypto/x509roots/fallback"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "clustermail",
		Short:         "A clustered mail server: any node accepts mail, no accepted message is lost",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCmd(), newDevCmd(), newTLSCmd(), newKeygenCmd())
	addOperatorCommands(root)
	return root
}
