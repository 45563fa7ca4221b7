// Package certs loads the node's TLS certificate and keeps it current: an
// operator renews the files and the node picks them up on SIGHUP or within
// seconds of the change, without a restart.
package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Reloader serves the certificate in certFile/keyFile and reloads it when
// asked or when either file changes.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.RWMutex
	cert    *tls.Certificate
	modTime time.Time
}

// NewReloader loads the pair once; a bad pair at start is an error.
func NewReloader(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again. On error the previous certificate stays in use.
func (r *Reloader) Reload() error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s / %s: %w", r.certFile, r.keyFile, err)
	}
	mt := r.newestModTime()
	r.mu.Lock()
	r.cert, r.modTime = &c, mt
	r.mu.Unlock()
	if c.Leaf != nil {
		r.log.Info("TLS certificate loaded", "subject", c.Leaf.Subject.String(), "not_after", c.Leaf.NotAfter)
	}
	return nil
}

func (r *Reloader) newestModTime() time.Time {
	var t time.Time
	for _, f := range []string{r.certFile, r.keyFile} {
		if st, err := os.Stat(f); err == nil && st.ModTime().After(t) {
			t = st.ModTime()
		}
	}
	return t
}

// GetCertificate is the tls.Config hook.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cert, nil
}

// ServerConfig returns a TLS server configuration using the reloader.
func (r *Reloader) ServerConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// Watch reloads when the files change (checked every interval) or when a
// value arrives on hup, until ctx ends.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration, hup <-chan os.Signal) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := r.Reload(); err != nil {
				r.log.Error("TLS reload on SIGHUP failed; keeping the old certificate", "err", err)
			}
		case <-t.C:
			r.mu.RLock()
			old := r.modTime
			r.mu.RUnlock()
			if mt := r.newestModTime(); mt.After(old) {
				if err := r.Reload(); err != nil {
					r.log.Error("TLS reload after a file change failed; keeping the old certificate", "err", err)
				}
			}
		}
	}
}
