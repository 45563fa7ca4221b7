package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"clustermail/api"
	"clustermail/backup"

	"github.com/spf13/cobra"
)

// Streaming commands (snapshot save and restore, mailbox export and
// import) move any amount of data, so --timeout does not bound the whole
// command, as it does elsewhere: it bounds the time without progress. A
// transfer that keeps moving runs as long as it needs; one that stalls for
// --timeout gives up.

// streamHelp ends the help of every streaming command.
const streamHelp = "\n\nHere --timeout is the longest time without progress, not a limit on the\n" +
	"whole transfer. A progress line goes to stderr when it is a terminal and the\n" +
	"transfer lasts, or always with --progress."

// streamFunc is the body of a streaming command. It reports progress to
// wd (through a meter) and bounds its quick side calls with quick.
type streamFunc func(ctx context.Context, c *api.Client, cmd *cobra.Command, args []string, wd *watchdog) error

// streamE adapts fn to cobra's RunE, with a watchdog instead of a deadline.
func (o *apiOptions) streamE(fn streamFunc) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		ctx, wd := newWatchdog(ctx, o.timeout)
		defer wd.stop()
		err := fn(ctx, o.client(), cmd, args, wd)
		var st *stalledError
		if err != nil && errors.As(context.Cause(ctx), &st) {
			return fmt.Errorf("%w\n(%v)", st, err)
		}
		return err
	}
}

// stalledError is the watchdog's cause for cancelling a transfer.
type stalledError struct{ idle time.Duration }

func (e *stalledError) Error() string {
	return fmt.Sprintf("gave up: no data moved for %s (raise --timeout to wait longer)", e.idle)
}

// watchdog cancels its context when it has not been kicked for idle.
type watchdog struct {
	idle   time.Duration
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	timer  *time.Timer // nil when idle is 0: no limit
}

func newWatchdog(parent context.Context, idle time.Duration) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancelCause(parent)
	wd := &watchdog{idle: idle, cancel: cancel}
	if idle > 0 {
		wd.timer = time.AfterFunc(idle, func() { cancel(&stalledError{idle: idle}) })
	}
	return ctx, wd
}

// kick records progress.
func (wd *watchdog) kick() { wd.wait(wd.idle) }

// wait allows d (at least idle) before the next progress, for a step
// where the server works without sending anything, such as a restore.
func (wd *watchdog) wait(d time.Duration) {
	if wd == nil || wd.timer == nil {
		return
	}
	wd.mu.Lock()
	defer wd.mu.Unlock()
	wd.timer.Reset(max(d, wd.idle))
}

// pause stops the clock, while the command waits for the operator; the
// next kick starts it again.
func (wd *watchdog) pause() {
	if wd == nil || wd.timer == nil {
		return
	}
	wd.mu.Lock()
	defer wd.mu.Unlock()
	wd.timer.Stop()
}

// quick bounds a short side call (a status or a listing) by --timeout, as
// every other command is bounded.
func (wd *watchdog) quick(ctx context.Context) (context.Context, context.CancelFunc) {
	if wd == nil || wd.idle <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, wd.idle)
}

func (wd *watchdog) stop() {
	if wd.timer != nil {
		wd.timer.Stop()
	}
	wd.cancel(nil)
}

// progressOptions are the flags that control the progress line.
type progressOptions struct {
	force bool // --progress
}

func (p *progressOptions) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&p.force, "progress", false, "show a progress line on stderr even when it is not a terminal")
}

// autoDelay is how long a transfer runs before a progress line appears on
// its own, so that short runs stay quiet.
const autoDelay = time.Second

// newProgress returns the progress line of one transfer on cmd's stderr:
// drawn when --progress is given, or when stderr is a terminal and the
// transfer lasts.
func (p *progressOptions) newProgress(cmd *cobra.Command, label string) *progress {
	out := cmd.ErrOrStderr()
	pr := &progress{out: out, label: label, now: time.Now}
	switch {
	case p.force:
		pr.enabled = true
	case isTerminal(out):
		pr.enabled, pr.delay = true, autoDelay
	}
	pr.start = pr.now()
	return pr
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress draws one line, rewritten in place with \r: messages done and
// their total, bytes, rate, and a bar when the total is known. No
// dependency: a terminal understands \r, and a log file gets one line per
// redraw, which stays readable.
type progress struct {
	out        io.Writer
	label      string
	enabled    bool
	delay      time.Duration
	totalMsgs  int   // 0: unknown
	totalBytes int64 // 0: unknown; when known, the bar follows bytes
	now        func() time.Time

	mu        sync.Mutex
	start     time.Time
	last      time.Time
	drawn     bool
	lastWidth int
}

// redrawEvery limits redraws: the eye does not need more.
const redrawEvery = 200 * time.Millisecond

// update reports the transfer's state; the line is redrawn if it is due.
func (p *progress) update(msgs int, bytes int64) {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if now.Sub(p.start) < p.delay || (p.drawn && now.Sub(p.last) < redrawEvery) {
		return
	}
	p.draw(now, msgs, bytes)
}

// done draws the final state and ends the line, if a line was started.
func (p *progress) done(msgs int, bytes int64) {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.drawn && p.delay > 0 {
		return // a short run: nothing was shown, nothing to finish
	}
	p.draw(p.now(), msgs, bytes)
	fmt.Fprintln(p.out)
}

func (p *progress) draw(now time.Time, msgs int, bytes int64) {
	line := p.line(now.Sub(p.start), msgs, bytes)
	pad := ""
	if n := p.lastWidth - len(line); n > 0 {
		pad = strings.Repeat(" ", n) // blank out the rest of a longer line
	}
	fmt.Fprintf(p.out, "\r%s%s", line, pad)
	p.drawn, p.last, p.lastWidth = true, now, len(line)
}

func (p *progress) line(elapsed time.Duration, msgs int, bytes int64) string {
	var b strings.Builder
	b.WriteString(p.label)
	frac := -1.0
	switch {
	case p.totalBytes > 0:
		frac = float64(bytes) / float64(p.totalBytes)
	case p.totalMsgs > 0:
		frac = float64(msgs) / float64(p.totalMsgs)
	}
	if frac >= 0 {
		const width = 20
		frac = min(frac, 1)
		fill := int(frac * width)
		fmt.Fprintf(&b, " [%s%s] %3.0f%%", strings.Repeat("#", fill), strings.Repeat("-", width-fill), frac*100)
	}
	if p.totalMsgs > 0 {
		fmt.Fprintf(&b, "  %d/%d messages", msgs, p.totalMsgs)
	} else if msgs > 0 || p.totalBytes == 0 {
		fmt.Fprintf(&b, "  %d messages", msgs)
	}
	if p.totalBytes > 0 {
		fmt.Fprintf(&b, "  %s/%s", formatSize(bytes), formatSize(p.totalBytes))
	} else {
		fmt.Fprintf(&b, "  %s", formatSize(bytes))
	}
	if elapsed >= 100*time.Millisecond {
		fmt.Fprintf(&b, "  %s/s", formatSize(int64(float64(bytes)/elapsed.Seconds())))
	}
	return b.String()
}

// meter counts what a transfer moves, kicks the watchdog and updates the
// progress line. It counts messages by the mbox "From " lines.
type meter struct {
	wd    *watchdog
	prog  *progress
	count backup.Counter
	eof   func() // called once when the reader reaches its end
}

func (m *meter) record(p []byte) {
	if len(p) == 0 {
		return
	}
	m.count.Write(p)
	m.wd.kick()
	m.prog.update(m.count.Messages, m.count.Bytes)
}

func (m *meter) done() { m.prog.done(m.count.Messages, m.count.Bytes) }

// writer returns w, metered.
func (m *meter) writer(w io.Writer) io.Writer { return meterWriter{m, w} }

// reader returns r, metered.
func (m *meter) reader(r io.Reader) io.Reader { return &meterReader{m: m, r: r} }

type meterWriter struct {
	m *meter
	w io.Writer
}

func (mw meterWriter) Write(p []byte) (int, error) {
	n, err := mw.w.Write(p)
	mw.m.record(p[:n])
	return n, err
}

type meterReader struct {
	m    *meter
	r    io.Reader
	once sync.Once
}

func (mr *meterReader) Read(p []byte) (int, error) {
	n, err := mr.r.Read(p)
	mr.m.record(p[:n])
	if errors.Is(err, io.EOF) && mr.m.eof != nil {
		mr.once.Do(mr.m.eof)
	}
	return n, err
}
