package mitm

import (
	"net/http"
	"strings"
)

// applyProfile rewrites the headers of a request about to leave with
// identity p:
//
//   - hopper's own controls (Hopper-*) and proxy headers (Proxy-*) go;
//   - the client's identifying headers go and p's take their place:
//     User-Agent, Accept-Language, Accept-Encoding and the client hints
//     (Sec-CH-*, which only Chromium profiles send);
//   - a GET or HEAD that does not say what kind of request it is (no
//     Sec-Fetch-Mode, as from curl or a scraper) gets p's navigation headers
//     (Accept unless the client asked for something more specific than
//     "*/*", Upgrade-Insecure-Requests, Sec-Fetch-*, Priority); a browser's
//     own Sec-Fetch-* describe its request and stay, unless p's browser
//     does not send them;
//   - every other header is kept as the client sent it.
//
// Header names are stored as the profile spells them (sec-ch-ua in lower
// case, like Chromium), replacing any spelling the client used. Headers the
// browser sends over HTTP/2 only are left out when h2 is false. The mirror
// profile keeps every header of the client's but hopper's and the proxy's:
// the client is the browser.
func applyProfile(h http.Header, p *Profile, method string, h2 bool) {
	for k := range h {
		if hasPrefixFold(k, "Hopper-") || hasPrefixFold(k, "Proxy-") || (!p.mirror && hasPrefixFold(k, "Sec-Ch-")) {
			delete(h, k)
		}
	}
	if p.mirror {
		return
	}
	browserFetch := h.Get("Sec-Fetch-Mode") != ""
	navigation := !browserFetch && (method == http.MethodGet || method == http.MethodHead || method == "")
	sendsFetchMeta := false
	for _, ph := range p.Headers {
		if hasPrefixFold(ph.Name, "Sec-Fetch-") {
			sendsFetchMeta = true
		}
		if ph.HTTP2Only && !h2 {
			continue
		}
		if !ph.Navigation {
			setExact(h, ph.Name, ph.Value)
			continue
		}
		if !navigation {
			continue
		}
		if strings.EqualFold(ph.Name, "Accept") {
			if v := h.Get("Accept"); v != "" && v != "*/*" {
				continue
			}
		}
		setExact(h, ph.Name, ph.Value)
	}
	if browserFetch && !sendsFetchMeta {
		for k := range h {
			if hasPrefixFold(k, "Sec-Fetch-") {
				delete(h, k)
			}
		}
	}
}

// setExact sets name to value, removing the header under any other spelling.
func setExact(h http.Header, name, value string) {
	for k := range h {
		if strings.EqualFold(k, name) {
			delete(h, k)
		}
	}
	h[name] = []string{value}
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
