package cluster

import (
	"bytes"
	"context"
	"log/slog"
)

// logWriter turns the line-oriented logs of memberlist and Raft ("[WARN]
// raft: ...") into slog records at the level the line names, so their
// debug chatter does not show up as info.
type logWriter struct {
	log  *slog.Logger
	part string
}

var levels = []struct {
	tag   string
	level slog.Level
}{
	{"[TRACE]", slog.LevelDebug - 4}, {"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError},
}

func (w logWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	// Strip a leading timestamp, which slog adds itself.
	if i := bytes.IndexByte(line, '['); i > 0 {
		line = line[i:]
	}
	level := slog.LevelInfo
	for _, l := range levels {
		if bytes.HasPrefix(line, []byte(l.tag)) {
			level = l.level
			line = bytes.TrimSpace(line[len(l.tag):])
			break
		}
	}
	if w.log.Enabled(context.Background(), level) {
		w.log.Log(context.Background(), level, string(line), "part", w.part)
	}
	return len(p), nil
}
