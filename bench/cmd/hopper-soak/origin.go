package main

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// origin is the HTTP server every request ends at: GET /bytes?n=N answers
// N bytes.
type origin struct {
	srv  *http.Server
	addr string
	done chan struct{}
}

func startOrigin() (*origin, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	block := make([]byte, 64<<10)
	for i := range block {
		block[i] = byte('a' + i%26)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 || n > 16<<20 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		for n > 0 {
			k := min(n, len(block))
			if _, err := w.Write(block[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	o := &origin{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second},
		addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		defer close(o.done)
		_ = o.srv.Serve(ln)
	}()
	return o, nil
}

func (o *origin) url(n int) string { return fmt.Sprintf("http://%s/bytes?n=%d", o.addr, n) }

func (o *origin) close() {
	_ = o.srv.Close()
	<-o.done
}
