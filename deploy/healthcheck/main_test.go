package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	ready := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/health/ready" {
			http.NotFound(w, r)
			return
		}
		if !ready {
			http.Error(w, `{"error":"not ready"}`, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"status":"ready"}`))
	}))
	defer srv.Close()
	url := srv.URL + "/v1/health/ready"

	if err := probe(url, time.Second); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("not ready: got %v, want an error naming 503", err)
	}
	ready = true
	if err := probe(url, time.Second); err != nil {
		t.Errorf("ready: %v", err)
	}
	if err := probe(srv.URL+"/nowhere", time.Second); err == nil {
		t.Error("404 passed")
	}

	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/v1/health/ready"
	ln.Close()
	if err := probe(closed, time.Second); err == nil {
		t.Error("a closed port passed")
	}

	// A listener that never answers: the timeout ends the probe.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start := time.Now()
	if err := probe("http://"+ln.Addr().String()+"/", 200*time.Millisecond); err == nil {
		t.Error("a silent server passed")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the probe took %v despite a 200ms timeout", d)
	}

	for _, bad := range []string{"https://127.0.0.1:8080/", "127.0.0.1:8080", "http:///x"} {
		if err := probe(bad, time.Second); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
