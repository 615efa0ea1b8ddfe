package mitm

import (
	_ "embed" // the recorded ClientHellos
	"fmt"

	utls "github.com/refraction-networking/utls"

	"github.com/hopper-proxy/hopper/fingerprint"
)

// This file is the one place the built-in browsers are described. Adding a
// browser version is adding an entry to builtinProfiles; the tests then
// check, through a real Interceptor and the judge, that an origin sees the
// entry's JA4, Akamai fingerprint and header order.
//
// Sources. chrome, edge and firefox are the current versions, recorded off
// the wire here: the ClientHellos of Chromium 156 and Firefox ESR 153
// (Debian's builds) are in testdata/hellos, and their HTTP/2 prefaces,
// HEADERS priorities and navigation header orders are what the judge
// reported for them over HTTP/2 and HTTP/1.1; TestRealBrowsersMatchTheirProfiles
// drives both browsers and the profiles to one judge and holds them equal.
// The superseded entries, safari and ios send uTLS v1.8.2's parrots.
// chrome133 and edge133 share Chromium's preface and orders (unchanged since
// Chrome 106); firefox120's preface, PRIORITY tree and first stream 15 are
// those recorded for Firefox 117 to 120; Safari's and iOS's SETTINGS and
// window those recorded for Safari 16 and iOS 15 to 16 (iOS 14's are taken
// to be the same). Firefox 120's and Safari's header orders follow
// published captures of those versions, not read off the wire here.

// The ClientHello records (5-byte record header included) the current
// profiles rebuild. Go builds leave testdata out of packages, not out of
// embed: the test fixtures and the profiles are the same bytes.
var (
	//go:embed testdata/hellos/chromium-156.bin
	chromium156Hello []byte
	//go:embed testdata/hellos/firefox-153.bin
	firefox153Hello []byte
)

// recordedHello returns a HelloSpec rebuilding a browser's recorded
// ClientHello with uTLS's Fingerprinter, as mirror mode does for a live
// client. Per handshake, uTLS picks fresh GREASE values, key shares, session
// ID and ECH GREASE payload, and the SNI is the origin's. With boring the
// hello varies as BoringSSL's (Chrome's) does between connections: the
// extensions are permuted around GREASE and padding (JA4 sorts them, so it
// stays the same), and the ECH GREASE payload takes one of BoringSSL's
// sizes rather than the recorded one.
func recordedHello(name string, record []byte, boring bool) func() (*utls.ClientHelloSpec, error) {
	return func() (*utls.ClientHelloSpec, error) {
		f := &utls.Fingerprinter{AllowBluntMimicry: true} // keeps Chrome's trust anchor IDs (0xca34) as sent
		spec, err := f.RawClientHello(record)
		if err != nil {
			return nil, fmt.Errorf("recorded %s ClientHello: %w", name, err)
		}
		if boring {
			for i, e := range spec.Extensions {
				if _, ok := e.(*utls.GREASEEncryptedClientHelloExtension); ok {
					spec.Extensions[i] = utls.BoringGREASEECH()
				}
			}
			spec.Extensions = utls.ShuffleChromeTLSExtensions(spec.Extensions)
		}
		return spec, nil
	}
}

// HTTP/2 SETTINGS identifiers (RFC 9113 §6.5.2).
const (
	settingHeaderTableSize      = 0x1
	settingEnablePush           = 0x2
	settingMaxConcurrentStreams = 0x3
	settingInitialWindowSize    = 0x4
	settingMaxFrameSize         = 0x5
	settingMaxHeaderListSize    = 0x6
)

// Header orders. Chromium sends a navigation's client hints first and a
// fetch's around the User-Agent; Host and Connection lead over HTTP/1.1.
var (
	chromeNavigationOrder = []string{
		"host", "connection", "content-length", "pragma", "cache-control", "*",
		"sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform", "upgrade-insecure-requests",
		"content-type", "user-agent", "origin", "accept",
		"sec-fetch-site", "sec-fetch-mode", "sec-fetch-user", "sec-fetch-dest",
		"referer", "accept-encoding", "accept-language", "cookie",
		"if-none-match", "if-modified-since", "range", "priority",
	}
	chromeFetchOrder = []string{
		"host", "connection", "content-length", "pragma", "cache-control", "*",
		"sec-ch-ua-platform", "user-agent", "sec-ch-ua", "content-type", "sec-ch-ua-mobile",
		"accept", "origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest",
		"referer", "accept-encoding", "accept-language", "cookie",
		"if-none-match", "if-modified-since", "range", "priority",
	}
	firefoxOrder = []string{
		"host", "user-agent", "accept", "accept-language", "accept-encoding",
		"content-type", "*", "content-length", "origin", "referer", "connection", "cookie",
		"upgrade-insecure-requests", "sec-fetch-dest", "sec-fetch-mode", "sec-fetch-site", "sec-fetch-user",
		"if-modified-since", "if-none-match", "range", "priority", "pragma", "cache-control", "te",
	}
	safariOrder = []string{
		"host", "content-type", "*", "origin", "accept", "cookie", "content-length",
		"user-agent", "referer", "accept-language", "accept-encoding",
		"if-none-match", "if-modified-since", "range", "connection",
	}
)

// chromiumHTTP2 is the HTTP/2 preface of Chrome (and Edge) since 106: no
// PRIORITY frames, every HEADERS exclusive on stream 0 with weight 256.
func chromiumHTTP2() fingerprint.HTTP2 {
	return fingerprint.HTTP2{
		Settings: []fingerprint.Setting{
			{ID: settingHeaderTableSize, Value: 65536},
			{ID: settingEnablePush, Value: 0},
			{ID: settingInitialWindowSize, Value: 6291456},
			{ID: settingMaxHeaderListSize, Value: 262144},
		},
		WindowUpdate:      15663105,
		HeadersPriority:   &fingerprint.Priority{Exclusive: true, DependsOn: 0, Weight: 255},
		PseudoHeaderOrder: []string{":method", ":authority", ":scheme", ":path"},
		FirstStreamID:     1,
	}
}

// chromiumHeaders is the bundle of a Chromium-based browser on Windows
// whose sec-ch-ua is brands, whose User-Agent is ua and whose navigations
// Accept accept.
func chromiumHeaders(brands, ua, accept string) []ProfileHeader {
	nav := func(name, value string) ProfileHeader {
		return ProfileHeader{Name: name, Value: value, Navigation: true}
	}
	id := func(name, value string) ProfileHeader { return ProfileHeader{Name: name, Value: value} }
	return []ProfileHeader{
		id("sec-ch-ua", brands),
		id("sec-ch-ua-mobile", "?0"),
		id("sec-ch-ua-platform", `"Windows"`),
		nav("Upgrade-Insecure-Requests", "1"),
		id("User-Agent", ua),
		nav("Accept", accept),
		nav("Sec-Fetch-Site", "none"),
		nav("Sec-Fetch-Mode", "navigate"),
		nav("Sec-Fetch-User", "?1"),
		nav("Sec-Fetch-Dest", "document"),
		id("Accept-Encoding", "gzip, deflate, br, zstd"),
		id("Accept-Language", "en-US,en;q=0.9"),
		{Name: "Priority", Value: "u=0, i", Navigation: true, HTTP2Only: true},
	}
}

// safariHTTP2 is the preface of Safari (macOS 16, iOS 14 to 16): SETTINGS
// INITIAL_WINDOW_SIZE then MAX_CONCURRENT_STREAMS, a 10 MiB window, and
// :method :scheme :path :authority.
func safariHTTP2(window uint32) fingerprint.HTTP2 {
	return fingerprint.HTTP2{
		Settings: []fingerprint.Setting{
			{ID: settingInitialWindowSize, Value: window},
			{ID: settingMaxConcurrentStreams, Value: 100},
		},
		WindowUpdate:      10485760,
		PseudoHeaderOrder: []string{":method", ":scheme", ":path", ":authority"},
		FirstStreamID:     1,
	}
}

// firefoxHeaders is the bundle of Firefox on Windows at version v whose
// navigations Accept accept, with its Accept-Language and Accept-Encoding,
// and whether it sends Priority (Firefox 128 and later, over HTTP/1.1 too).
func firefoxHeaders(v, accept, lang, enc string, priority bool) []ProfileHeader {
	nav := func(name, value string) ProfileHeader {
		return ProfileHeader{Name: name, Value: value, Navigation: true}
	}
	id := func(name, value string) ProfileHeader { return ProfileHeader{Name: name, Value: value} }
	hs := []ProfileHeader{
		id("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:"+v+") Gecko/20100101 Firefox/"+v),
		nav("Accept", accept),
		id("Accept-Language", lang),
		id("Accept-Encoding", enc),
		nav("Upgrade-Insecure-Requests", "1"),
		nav("Sec-Fetch-Dest", "document"),
		nav("Sec-Fetch-Mode", "navigate"),
		nav("Sec-Fetch-Site", "none"),
		nav("Sec-Fetch-User", "?1"),
	}
	if priority {
		hs = append(hs, nav("Priority", "u=0, i"))
	}
	return append(hs, ProfileHeader{Name: "TE", Value: "trailers", HTTP2Only: true})
}

func builtinProfiles() []Profile {
	nav := func(name, value string) ProfileHeader {
		return ProfileHeader{Name: name, Value: value, Navigation: true}
	}
	id := func(name, value string) ProfileHeader { return ProfileHeader{Name: name, Value: value} }
	const (
		chromeAkamai = "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"
		// Chromium's navigation Accept: image/jxl joined it by Chromium 156.
		chrome156Accept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/jxl,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
		chrome133Accept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
		chrome156JA4    = "t13d1517h2_8daaf6152771_cb7bf5808d99"
		chrome133JA4    = "t13d1516h2_8daaf6152771_d8a2da3f94cd"
		chrome156UA     = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
		chrome133UA     = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36"
	)
	// Chrome and Edge are Chromium: one network stack and ClientHello per
	// version, the brand and User-Agent their own. The sec-ch-ua lists are
	// Chromium's GREASE brand algorithm seeded by the major version (156:
	// "Not:A-Brand" v8, order GREASE, Chromium, brand). The ClientHello is
	// the same on every desktop platform, so the profiles claim Windows,
	// where most users are, though the hello was recorded on Linux.
	chromium156 := recordedHello("Chromium 156", chromium156Hello, true)
	return []Profile{
		{
			Name:      "chrome",
			Browser:   "Chrome 156 on Windows",
			HelloSpec: chromium156,
			HTTP2:     chromiumHTTP2(),
			Headers: chromiumHeaders(`"Not:A-Brand";v="8", "Chromium";v="156", "Google Chrome";v="156"`,
				chrome156UA, chrome156Accept),
			HeaderOrder:      chromeNavigationOrder,
			FetchHeaderOrder: chromeFetchOrder,
			JA4:              chrome156JA4,
			Akamai:           chromeAkamai,
		},
		{
			Name:      "edge",
			Browser:   "Edge 156 on Windows",
			HelloSpec: chromium156,
			HTTP2:     chromiumHTTP2(),
			Headers: chromiumHeaders(`"Not:A-Brand";v="8", "Chromium";v="156", "Microsoft Edge";v="156"`,
				chrome156UA+" Edg/156.0.0.0", chrome156Accept),
			HeaderOrder:      chromeNavigationOrder,
			FetchHeaderOrder: chromeFetchOrder,
			JA4:              chrome156JA4,
			Akamai:           chromeAkamai,
		},
		{
			Name:      "firefox",
			Browser:   "Firefox 153 on Windows",
			HelloSpec: recordedHello("Firefox 153", firefox153Hello, false), // Firefox keeps one order
			// Firefox 153 sends no PRIORITY frames (its dependency tree is
			// gone) but keeps stream 1 for an HTTP/1.1 Upgrade, so its
			// first request is stream 3.
			HTTP2: fingerprint.HTTP2{
				Settings: []fingerprint.Setting{
					{ID: settingHeaderTableSize, Value: 65536},
					{ID: settingEnablePush, Value: 0},
					{ID: settingInitialWindowSize, Value: 131072},
					{ID: settingMaxFrameSize, Value: 16384},
				},
				WindowUpdate:      12517377,
				HeadersPriority:   &fingerprint.Priority{DependsOn: 0, Weight: 41},
				PseudoHeaderOrder: []string{":method", ":path", ":authority", ":scheme"},
				FirstStreamID:     3,
			},
			Headers: firefoxHeaders("153.0", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
				"en-US,en;q=0.9", "gzip, deflate, br, zstd", true),
			HeaderOrder: firefoxOrder,
			JA4:         "t13d1617h2_86a278354501_3cbfd9057e0d",
			Akamai:      "1:65536;2:0;4:131072;5:16384|12517377|0|m,p,a,s",
		},
		{
			Name:    "safari",
			Browser: "Safari 16.0 on macOS",
			HelloID: utls.HelloSafari_16_0,
			HTTP2:   safariHTTP2(4194304),
			Headers: []ProfileHeader{
				nav("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
				id("User-Agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Safari/605.1.15"),
				id("Accept-Language", "en-US,en;q=0.9"),
				id("Accept-Encoding", "gzip, deflate, br"),
			},
			HeaderOrder: safariOrder,
			JA4:         "t13d2014h2_a09f3c656075_14788d8d241b",
			Akamai:      "4:4194304;3:100|10485760|0|m,s,p,a",
		},
		{
			Name:    "ios",
			Browser: "Safari on iOS 14",
			HelloID: utls.HelloIOS_14,
			HTTP2:   safariHTTP2(2097152),
			Headers: []ProfileHeader{
				nav("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
				id("User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 14_8 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.1.2 Mobile/15E148 Safari/604.1"),
				id("Accept-Language", "en-us"),
				id("Accept-Encoding", "gzip, deflate, br"),
			},
			HeaderOrder: safariOrder,
			JA4:         "t13d2613h2_2802a3db6c62_845d286b0d67",
			Akamai:      "4:2097152;3:100|10485760|0|m,s,p,a",
		},

		// Earlier versions, kept for scripts that name them; random does
		// not pick them.
		{
			Name:    "chrome133",
			Browser: "Chrome 133 on Windows",
			HelloID: utls.HelloChrome_133,
			HTTP2:   chromiumHTTP2(),
			Headers: chromiumHeaders(`"Not(A:Brand";v="99", "Google Chrome";v="133", "Chromium";v="133"`,
				chrome133UA, chrome133Accept),
			HeaderOrder:      chromeNavigationOrder,
			FetchHeaderOrder: chromeFetchOrder,
			JA4:              chrome133JA4,
			Akamai:           chromeAkamai,
			Superseded:       true,
		},
		{
			Name:    "edge133",
			Browser: "Edge 133 on Windows",
			HelloID: utls.HelloChrome_133,
			HTTP2:   chromiumHTTP2(),
			Headers: chromiumHeaders(`"Not(A:Brand";v="99", "Microsoft Edge";v="133", "Chromium";v="133"`,
				chrome133UA+" Edg/133.0.0.0", chrome133Accept),
			HeaderOrder:      chromeNavigationOrder,
			FetchHeaderOrder: chromeFetchOrder,
			JA4:              chrome133JA4,
			Akamai:           chromeAkamai,
			Superseded:       true,
		},
		{
			Name:    "firefox120",
			Browser: "Firefox 120 on Windows",
			HelloID: utls.HelloFirefox_120,
			HTTP2: fingerprint.HTTP2{
				Settings: []fingerprint.Setting{
					{ID: settingHeaderTableSize, Value: 65536},
					{ID: settingInitialWindowSize, Value: 131072},
					{ID: settingMaxFrameSize, Value: 16384},
				},
				WindowUpdate: 12517377,
				// The dependency tree Firefox built on idle streams 3 to 13
				// (urgent-start, unblocked, leader, follower, speculative,
				// background); a navigation's HEADERS depend on 13.
				Priorities: []fingerprint.Priority{
					{StreamID: 3, Weight: 200},
					{StreamID: 5, Weight: 100},
					{StreamID: 7, Weight: 0},
					{StreamID: 9, DependsOn: 7, Weight: 0},
					{StreamID: 11, DependsOn: 3, Weight: 0},
					{StreamID: 13, Weight: 240},
				},
				HeadersPriority:   &fingerprint.Priority{DependsOn: 13, Weight: 41},
				PseudoHeaderOrder: []string{":method", ":path", ":authority", ":scheme"},
				FirstStreamID:     15,
			},
			Headers: firefoxHeaders("120.0", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
				"en-US,en;q=0.5", "gzip, deflate, br", false),
			HeaderOrder: firefoxOrder,
			JA4:         "t13d1715h2_5b57614c22b0_5c2c66f702b0",
			Akamai:      "1:65536;4:131072;5:16384|12517377|3:0:0:201,5:0:0:101,7:0:0:1,9:0:7:1,11:0:3:1,13:0:0:241|m,p,a,s",
			Superseded:  true,
		},
	}
}
