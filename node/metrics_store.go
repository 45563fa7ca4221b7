package node

import (
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// storeEvents counts what Pebble reports through its event listener and
// not in Metrics: write stalls (writers held back until a flush or
// compaction catches up) and the time spent flushing memtables.
type storeEvents struct {
	stalls, stallNanos, flushNanos atomic.Int64
	stallStart                     atomic.Int64 // unix nanos, 0 when not stalled
}

func (e *storeEvents) listener() *pebble.EventListener {
	return &pebble.EventListener{
		WriteStallBegin: func(pebble.WriteStallBeginInfo) {
			e.stalls.Add(1)
			e.stallStart.Store(time.Now().UnixNano())
		},
		WriteStallEnd: func() {
			if t := e.stallStart.Swap(0); t != 0 {
				e.stallNanos.Add(time.Now().UnixNano() - t)
			}
		},
		FlushEnd: func(i pebble.FlushInfo) { e.flushNanos.Add(int64(i.TotalDuration)) },
	}
}

// storeCollector exposes the node's Pebble database, read once per scrape:
// the block cache hit rate, L0 files and compaction debt are what tells an
// operator (or a benchmark) that the store, not the network, is the limit.
type storeCollector struct {
	db     *pebble.DB
	events *storeEvents

	cacheHits, cacheMisses, cacheBytes *prometheus.Desc
	l0Files, l0Sublevels, readAmp      *prometheus.Desc
	compactions, flushes, debt         *prometheus.Desc
	memtableBytes, diskBytes           *prometheus.Desc
	stalls, stallSeconds, flushSeconds *prometheus.Desc
}

func newStoreCollector(db *pebble.DB, events *storeEvents) *storeCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("clustermail_store_"+name, help, nil, nil)
	}
	return &storeCollector{
		db:            db,
		events:        events,
		cacheHits:     d("block_cache_hits_total", "Block cache hits."),
		cacheMisses:   d("block_cache_misses_total", "Block cache misses: blocks read from files."),
		cacheBytes:    d("block_cache_bytes", "Bytes held by the block cache."),
		l0Files:       d("l0_files", "Files in level 0; many mean compactions lag behind writes."),
		l0Sublevels:   d("l0_sublevels", "Sublevels of level 0."),
		readAmp:       d("read_amplification", "Files a point lookup may have to check."),
		compactions:   d("compactions_total", "Compactions run."),
		flushes:       d("flushes_total", "Memtable flushes."),
		debt:          d("compaction_debt_bytes", "Estimated bytes compactions must still rewrite."),
		memtableBytes: d("memtable_bytes", "Bytes in memtables, flushed or not."),
		diskBytes:     d("disk_bytes", "Disk space used by the database (tables, blob files, WAL)."),
		stalls:        d("write_stalls_total", "Times writes were held back until flushes or compactions caught up."),
		stallSeconds:  d("write_stall_seconds_total", "Time writes spent held back."),
		flushSeconds:  d("flush_seconds_total", "Time spent flushing memtables."),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cacheHits, c.cacheMisses, c.cacheBytes, c.l0Files, c.l0Sublevels,
		c.readAmp, c.compactions, c.flushes, c.debt, c.memtableBytes, c.diskBytes,
		c.stalls, c.stallSeconds, c.flushSeconds} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.db.Metrics()
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(c.cacheHits, float64(m.BlockCache.Hits))
	counter(c.cacheMisses, float64(m.BlockCache.Misses))
	gauge(c.cacheBytes, float64(m.BlockCache.Size))
	gauge(c.l0Files, float64(m.Levels[0].TablesCount))
	gauge(c.l0Sublevels, float64(m.Levels[0].Sublevels))
	gauge(c.readAmp, float64(m.ReadAmp()))
	counter(c.compactions, float64(m.Compact.Count))
	counter(c.flushes, float64(m.Flush.Count))
	gauge(c.debt, float64(m.Compact.EstimatedDebt))
	gauge(c.memtableBytes, float64(m.MemTable.Size))
	gauge(c.diskBytes, float64(m.DiskSpaceUsage()))
	counter(c.stalls, float64(c.events.stalls.Load()))
	counter(c.stallSeconds, time.Duration(c.events.stallNanos.Load()).Seconds())
	counter(c.flushSeconds, time.Duration(c.events.flushNanos.Load()).Seconds())
}
