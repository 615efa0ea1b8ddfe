package admin

import (
	"encoding/json"
	"net/http"
)

// serveHealth answers 200 with the reason while the proxy serves and has
// egress in service, else 503 with what is wrong, as one plain-text line.
func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	h := s.cfg.Metrics.health(s.cfg.Serving)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !h.OK {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write([]byte(h.Reason + "\n"))
}

func (s *Server) serveUpstreams(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.cfg.Metrics.upstreams())
}

func (s *Server) serveStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.cfg.Metrics.stats(s.cfg.ProxyAddr, s.cfg.Serving))
}

// serveCA serves the MITM CA certificate, or 404 while there is none.
func (s *Server) serveCA(w http.ResponseWriter, r *http.Request) {
	var pem []byte
	if s.cfg.CAPEM != nil {
		pem = s.cfg.CAPEM()
	}
	if len(pem) == 0 {
		http.Error(w, "No CA: MITM is off.", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="hopper-ca.pem"`)
	_, _ = w.Write(pem)
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(body, '\n'))
}
