package job

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Reporter shows what a run does: on a terminal, a line per stage and a
// progress bar; in batch (no terminal), JSON log lines with a "severity"
// field that Cloud Logging understands, and periodic progress lines.
type Reporter struct {
	w     io.Writer
	tty   bool
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu    sync.Mutex
	barOn bool // a progress bar is on the terminal's last line
}

// NewReporter writes to w: human lines when tty, JSON logs otherwise.
func NewReporter(w io.Writer, tty bool) *Reporter {
	r := &Reporter{w: w, tty: tty, every: 30 * time.Second, now: time.Now}
	if tty {
		r.log = slog.New(slog.NewTextHandler(&lineWriter{r: r}, &slog.HandlerOptions{
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if len(groups) == 0 && a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			},
		}))
	} else {
		r.log = NewJSONLogger(&lineWriter{r: r})
	}
	return r
}

// NewJSONLogger returns a slog logger writing one JSON object per line with
// "severity" (DEBUG, INFO, WARNING, ERROR), "message" and "time", the field
// names Cloud Logging reads from a container's output.
func NewJSONLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.LevelKey:
				lv, _ := a.Value.Any().(slog.Level)
				sev := "DEBUG"
				switch {
				case lv >= slog.LevelError:
					sev = "ERROR"
				case lv >= slog.LevelWarn:
					sev = "WARNING"
				case lv >= slog.LevelInfo:
					sev = "INFO"
				}
				return slog.String("severity", sev)
			case slog.MessageKey:
				a.Key = "message"
			}
			return a
		},
	}))
}

// Logger returns the reporter's logger.
func (r *Reporter) Logger() *slog.Logger { return r.log }

// lineWriter clears a progress bar before a log line goes out.
type lineWriter struct{ r *Reporter }

func (l *lineWriter) Write(p []byte) (int, error) {
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	l.r.clearBar()
	return l.r.w.Write(p)
}

func (r *Reporter) clearBar() {
	if r.barOn {
		fmt.Fprint(r.w, "\r\033[K")
		r.barOn = false
	}
}

// stage reports one stage's outcome: ran, reused, done (already finished),
// waiting, failed.
func (r *Reporter) stage(state, name string, d time.Duration, fp string, extra string) {
	if !r.tty {
		args := []any{"stage", name, "state", state, "fingerprint", fp}
		if d > 0 {
			args = append(args, "seconds", d.Seconds())
		}
		if extra != "" {
			args = append(args, "detail", extra)
		}
		lv := slog.LevelInfo
		if state == "failed" {
			lv = slog.LevelError
		}
		r.log.Log(context.Background(), lv, "stage "+state, args...)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clearBar()
	dur := ""
	if d > 0 {
		dur = d.Round(10 * time.Millisecond).String()
	}
	if len(fp) > 12 {
		fp = fp[:12]
	}
	line := fmt.Sprintf("%-8s %-24s %9s  %s", state, name, dur, fp)
	if extra != "" {
		line += "  " + extra
	}
	fmt.Fprintln(r.w, strings.TrimRight(line, " "))
}

// Printf writes a plain line on a terminal, an INFO log line in batch.
func (r *Reporter) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !r.tty {
		r.log.Info(msg)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clearBar()
	fmt.Fprintln(r.w, msg)
}

// Progress counts a stage's work items and shows them: a bar on a
// terminal, a log line every progress_every in batch.
type Progress struct {
	r     *Reporter
	stage string
	unit  string
	total int64

	mu    sync.Mutex
	done  int64
	start time.Time
	last  time.Time
}

func (r *Reporter) progress(stage, unit string, total int64) *Progress {
	now := r.now()
	return &Progress{r: r, stage: stage, unit: unit, total: total, start: now, last: now}
}

// Add records n more items done.
func (p *Progress) Add(n int64) {
	p.mu.Lock()
	p.done += n
	done := p.done
	now := p.r.now()
	interval := p.r.every
	if p.r.tty {
		interval = 200 * time.Millisecond
	}
	show := now.Sub(p.last) >= interval || (p.total > 0 && done >= p.total)
	if show {
		p.last = now
	}
	p.mu.Unlock()
	if show {
		p.show(done, now)
	}
}

func (p *Progress) show(done int64, now time.Time) {
	el := now.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	var eta time.Duration
	if rate > 0 && p.total > done {
		eta = time.Duration(float64(p.total-done) / rate * float64(time.Second)).Round(time.Second)
	}
	if !p.r.tty {
		p.r.log.Info("progress", "stage", p.stage, "done", done, "total", p.total, "unit", p.unit,
			"per_second", rate, "eta_seconds", eta.Seconds())
		return
	}
	const width = 24
	fill := 0
	if p.total > 0 {
		fill = int(int64(width) * min(done, p.total) / p.total)
	}
	bar := strings.Repeat("#", fill) + strings.Repeat(".", width-fill)
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	fmt.Fprintf(p.r.w, "\r\033[K%-24s [%s] %d/%d %s  %.1f/s  ETA %s", p.stage, bar, done, p.total, p.unit, rate, eta)
	p.r.barOn = true
}
