package node

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
)

func TestStoreCollector(t *testing.T) {
	var ev storeEvents
	db, err := pebble.Open(t.TempDir(), &pebble.Options{EventListener: ev.listener()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Set([]byte("k"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newStoreCollector(db, &ev))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	if len(got) != 14 {
		t.Fatalf("%d store metrics, want 14: %v", len(got), got)
	}
	if got["clustermail_store_flushes_total"] < 1 || got["clustermail_store_disk_bytes"] <= 0 ||
		got["clustermail_store_flush_seconds_total"] <= 0 {
		t.Fatalf("after a flush: %v", got)
	}
}
