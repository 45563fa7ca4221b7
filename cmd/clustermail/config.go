package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// applyConfigSources fills every flag not given on the command line from
// CLUSTERMAIL_<FLAG>, else from the config file: flags win, then the
// environment, then the file.
func applyConfigSources(fs *pflag.FlagSet, file string, env func(string) (string, bool)) error {
	var values map[string]any
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("config file: %w", err)
		}
		if err := yaml.Unmarshal(b, &values); err != nil {
			return fmt.Errorf("config file %s: %w", file, err)
		}
		for k := range values {
			if fs.Lookup(k) == nil || k == "config" {
				return fmt.Errorf("config file %s: unknown key %q (keys are the flag names, e.g. data-dir)", file, k)
			}
		}
	}
	var errs []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" {
			return
		}
		key := "CLUSTERMAIL_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := env(key); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q: %v", key, v, err))
			}
			return
		}
		v, ok := values[f.Name]
		if !ok {
			return
		}
		var s string
		switch x := v.(type) {
		case []any:
			parts := make([]string, len(x))
			for i, p := range x {
				parts[i] = fmt.Sprint(p)
			}
			s = strings.Join(parts, ",")
		default:
			s = fmt.Sprint(x)
		}
		if err := fs.Set(f.Name, s); err != nil {
			errs = append(errs, fmt.Sprintf("config %s: %q: %v", f.Name, s, err))
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("configuration: %s", strings.Join(errs, "; "))
	}
	return nil
}
