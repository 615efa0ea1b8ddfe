package judge

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Handler answers every request, whatever its method or path, with the
// request's Report as JSON (application/json, not cacheable). HEAD gets the
// headers only. It reads no request body.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := json.MarshalIndent(NewReport(r), "", "  ")
		if err != nil { // cannot happen: every field marshals
			http.Error(w, "cannot encode report", http.StatusInternalServerError)
			return
		}
		body = append(body, '\n')
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}

// Server serves Handler on a listener. The zero value is usable.
type Server struct {
	// Logger receives server errors (bad TLS handshakes, accept trouble).
	// Nil means none.
	Logger *zap.Logger
	// ReadHeaderTimeout bounds reading a request head. Zero means 10s.
	ReadHeaderTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown when ctx ends. Zero
	// means 5s.
	ShutdownTimeout time.Duration
}

// Serve answers on ln until ctx ends, then shuts down gracefully (in-flight
// requests get ShutdownTimeout) and returns nil. It closes ln. Any other
// failure of the listener is returned.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	log := s.Logger
	if log == nil {
		log = zap.NewNop()
	}
	rht := s.ReadHeaderTimeout
	if rht == 0 {
		rht = 10 * time.Second
	}
	srv := &http.Server{
		Handler:           Handler(),
		ReadHeaderTimeout: rht,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(log),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	st := s.ShutdownTimeout
	if st == 0 {
		st = 5 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), st)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// ListenAndServe listens on addr (TCP) and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}
