package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"clustermail/node"
)

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cm.yaml")
	yaml := "name: from-file\ndata-dir: /file\nsmtp-addr: \":2500\"\njoin:\n  - a:7946\n  - b:7946\nmax-message-size: 10M\ndead-server-grace: 1h\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var c node.Config
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	serverFlags(fs, &c)
	if err := fs.Parse([]string{"--name", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CLUSTERMAIL_DATA_DIR": "/env", "CLUSTERMAIL_NAME": "from-env"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := applyConfigSources(fs, file, lookup); err != nil {
		t.Fatal(err)
	}
	switch {
	case c.Name != "from-flag":
		t.Errorf("name = %q: a flag must win", c.Name)
	case c.DataDir != "/env":
		t.Errorf("data-dir = %q: the environment must win over the file", c.DataDir)
	case c.SMTPAddr != ":2500" || strings.Join(c.Join, ",") != "a:7946,b:7946":
		t.Errorf("from the file: smtp %q join %v", c.SMTPAddr, c.Join)
	case c.MaxMessageBytes != 10<<20 || c.DeadServerGrace != time.Hour:
		t.Errorf("typed values from the file: %d %v", c.MaxMessageBytes, c.DeadServerGrace)
	case c.MaxRecipients != 100:
		t.Errorf("default lost: %d", c.MaxRecipients)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		yaml, env, want string
	}{
		"unknown key":  {yaml: "nmae: x\n", want: `unknown key "nmae"`},
		"bad value":    {yaml: "max-recipients: many\n", want: "max-recipients"},
		"bad env":      {env: "soon", want: "CLUSTERMAIL_DEAD_SERVER_GRACE"},
		"missing file": {want: "config file"},
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
			if tc.yaml != "" {
				_ = os.WriteFile(file, []byte(tc.yaml), 0o600)
			} else if tc.env != "" {
				file = ""
			}
			var c node.Config
			fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
			serverFlags(fs, &c)
			lookup := func(k string) (string, bool) {
				if k == "CLUSTERMAIL_DEAD_SERVER_GRACE" && tc.env != "" {
					return tc.env, true
				}
				return "", false
			}
			err := applyConfigSources(fs, file, lookup)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
