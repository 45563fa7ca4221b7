package certs

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"testing"
	"time"
)

func TestReloadOnFileChangeAndSIGHUP(t *testing.T) {
	dir := t.TempDir()
	cf, kf, err := WriteSelfSigned(dir, []string{"one.test", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(cf, kf, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	name := func() string {
		c, _ := r.GetCertificate(&tls.ClientHelloInfo{})
		return c.Leaf.Subject.CommonName
	}
	if name() != "one.test" {
		t.Fatalf("first cert: %s", name())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup := make(chan os.Signal, 1)
	go r.Watch(ctx, 20*time.Millisecond, hup)

	// A renewal on disk is picked up by the watcher.
	if _, _, err := WriteSelfSigned(dir, []string{"two.test"}); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute)
	_ = os.Chtimes(cf, future, future)
	deadline := time.Now().Add(5 * time.Second)
	for name() != "two.test" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if name() != "two.test" {
		t.Fatalf("after a file change: %s", name())
	}
	// A broken pair keeps the old certificate.
	_ = os.WriteFile(kf, []byte("garbage"), 0o600)
	if err := r.Reload(); err == nil {
		t.Fatal("broken key loaded")
	}
	if name() != "two.test" {
		t.Fatal("old certificate lost on a failed reload")
	}
}
