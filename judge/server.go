package judge

import (
	"context"
	"crypto/tls"
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
// headers only. It reads no request body. Served by Server, the report also
// carries what the judge read off the wire (header order, and on the TLS
// port the JA4 and HTTP/2 fingerprints); served by another server it
// cannot.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := NewReport(r)
		if wi := wireFrom(r.Context()); wi != nil {
			wi.fill(&rep, r)
		}
		body, err := json.MarshalIndent(rep, "", "  ")
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
	// ReadHeaderTimeout bounds reading a request head, and on the TLS port
	// the ClientHello and handshake. Zero means 10s.
	ReadHeaderTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown when ctx ends. Zero
	// means 5s.
	ShutdownTimeout time.Duration
	// Certificate is what ServeTLS presents; nil makes a self-signed one
	// for localhost, 127.0.0.1 and ::1 (SelfSigned).
	Certificate *tls.Certificate
	// TLSNextProtos are the ALPN protocols ServeTLS accepts, in its order
	// of preference; nil means h2 then http/1.1.
	TLSNextProtos []string
}

func (s *Server) logger() *zap.Logger {
	if s.Logger == nil {
		return zap.NewNop()
	}
	return s.Logger
}

func (s *Server) readHeaderTimeout() time.Duration {
	if s.ReadHeaderTimeout == 0 {
		return 10 * time.Second
	}
	return s.ReadHeaderTimeout
}

// httpServer is the net/http server both ports use for HTTP/1.x.
func (s *Server) httpServer(ctx context.Context) *http.Server {
	return &http.Server{
		Handler:           Handler(),
		ReadHeaderTimeout: s.readHeaderTimeout(),
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(s.logger()),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnContext:       connContext,
	}
}

// Serve answers on ln until ctx ends, then shuts down gracefully (in-flight
// requests get ShutdownTimeout) and returns nil. It closes ln. Any other
// failure of the listener is returned. Reports carry the header order.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := s.httpServer(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(captureListener{ln}) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	err := s.shutdown(ctx, srv)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// shutdown stops srv gracefully within ShutdownTimeout, then forcibly.
func (s *Server) shutdown(ctx context.Context, srv *http.Server) error {
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
