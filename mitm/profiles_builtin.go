package mitm

import (
	utls "github.com/refraction-networking/utls"

	"github.com/hopper-proxy/hopper/fingerprint"
)

// This file is the one place the built-in browsers are described. Adding a
// browser version is adding an entry to builtinProfiles; the tests then
// check, through a real Interceptor and the judge, that an origin sees the
// entry's JA4, Akamai fingerprint and header order.
//
// Sources: the ClientHellos are uTLS v1.8.2's parrots (the JA4s below are
// what those parrots produce). The Chrome HTTP/2 preface, HEADERS priority
// and both header orders were read off the wire from Chromium over HTTP/1.1
// and HTTP/2 (they have not changed since Chrome 106); Firefox's preface,
// its PRIORITY tree and first stream 15 are those recorded for Firefox 117
// to 120; Safari's and iOS's SETTINGS and window are those recorded for
// Safari 16 and iOS 15 to 16 (iOS 14's are taken to be the same). Firefox's
// and Safari's header orders follow published captures of those versions;
// they were not read off the wire here.

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
// whose sec-ch-ua is brands and whose User-Agent is ua.
func chromiumHeaders(brands, ua string) []ProfileHeader {
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
		nav("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"),
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

func builtinProfiles() []Profile {
	nav := func(name, value string) ProfileHeader {
		return ProfileHeader{Name: name, Value: value, Navigation: true}
	}
	id := func(name, value string) ProfileHeader { return ProfileHeader{Name: name, Value: value} }
	const chromeAkamai = "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"
	return []Profile{
		{
			Name:    "chrome",
			Browser: "Chrome 133 on Windows",
			HelloID: utls.HelloChrome_133,
			HTTP2:   chromiumHTTP2(),
			Headers: chromiumHeaders(`"Not(A:Brand";v="99", "Google Chrome";v="133", "Chromium";v="133"`,
				"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36"),
			HeaderOrder:      chromeNavigationOrder,
			FetchHeaderOrder: chromeFetchOrder,
			JA4:              "t13d1516h2_8daaf6152771_d8a2da3f94cd",
			Akamai:           chromeAkamai,
		},
		{
			// Edge is Chromium: the same network stack and ClientHello as
			// the Chrome of its version, its own brand and User-Agent.
			Name:    "edge",
			Browser: "Edge 133 on Windows",
			HelloID: utls.HelloChrome_133,
			HTTP2:   chromiumHTTP2(),
			Headers: chromiumHeaders(`"Not(A:Brand";v="99", "Microsoft Edge";v="133", "Chromium";v="133"`,
				"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36 Edg/133.0.0.0"),
			HeaderOrder:      chromeNavigationOrder,
			FetchHeaderOrder: chromeFetchOrder,
			JA4:              "t13d1516h2_8daaf6152771_d8a2da3f94cd",
			Akamai:           chromeAkamai,
		},
		{
			Name:    "firefox",
			Browser: "Firefox 120 on Windows",
			HelloID: utls.HelloFirefox_120,
			HTTP2: fingerprint.HTTP2{
				Settings: []fingerprint.Setting{
					{ID: settingHeaderTableSize, Value: 65536},
					{ID: settingInitialWindowSize, Value: 131072},
					{ID: settingMaxFrameSize, Value: 16384},
				},
				WindowUpdate: 12517377,
				// The dependency tree Firefox builds on idle streams 3 to 13
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
			Headers: []ProfileHeader{
				id("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0"),
				nav("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
				id("Accept-Language", "en-US,en;q=0.5"),
				id("Accept-Encoding", "gzip, deflate, br"),
				nav("Upgrade-Insecure-Requests", "1"),
				nav("Sec-Fetch-Dest", "document"),
				nav("Sec-Fetch-Mode", "navigate"),
				nav("Sec-Fetch-Site", "none"),
				nav("Sec-Fetch-User", "?1"),
				{Name: "TE", Value: "trailers", HTTP2Only: true},
			},
			HeaderOrder: firefoxOrder,
			JA4:         "t13d1715h2_5b57614c22b0_5c2c66f702b0",
			Akamai:      "1:65536;4:131072;5:16384|12517377|3:0:0:201,5:0:0:101,7:0:0:1,9:0:7:1,11:0:3:1,13:0:0:241|m,p,a,s",
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
	}
}
