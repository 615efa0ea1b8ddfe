package socks

import (
	"errors"
	"time"

	"github.com/hopper-proxy/hopper/dial"
)

// opened tells the Observer a stream with this first byte started; the
// protocol matches what ServeStream then records in st.req.Protocol.
func (s *Server) opened(first byte) {
	o := s.cfg.Observer
	if o == nil {
		return
	}
	p := dial.ProtocolUnknown
	switch first {
	case socks5Version:
		p = dial.ProtocolSOCKS5
	case socks4Version:
		p = dial.ProtocolSOCKS4
	}
	o.TunnelOpened(p)
}

// observe tells the Observer how the stream ended.
func (s *Server) observe(st *stream) {
	o := s.cfg.Observer
	if o == nil {
		return
	}
	r := dial.Record{
		Protocol:    st.req.Protocol,
		Result:      st.result,
		Target:      st.req.Target,
		Up:          st.res.Up,
		Down:        st.res.Down,
		Duration:    time.Since(st.start),
		Established: st.ready,
		Err:         st.err,
	}
	var de *dial.Error
	switch {
	case st.out != nil:
		r.Upstream, r.Attempts, r.Dials = st.out.Upstream, len(st.out.Attempts), st.out.Attempts
	case errors.As(st.err, &de):
		r.Upstream, r.Attempts, r.Dials = de.Upstream, de.Attempt, de.Attempts
	}
	o.TunnelClosed(r)
}
