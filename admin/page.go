package admin

import (
	"embed"
	"io/fs"
	"net/http"
)

// static holds the status page: plain HTML, CSS and JavaScript, no build
// step and nothing fetched from elsewhere.
//
//go:embed static
var static embed.FS

// pageCSP lets the page load only its own files and call only this server.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

func servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, static, "static/index.html")
}

func staticHandler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the directory is embedded: cannot happen
	}
	fsrv := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", pageCSP)
		w.Header().Set("Cache-Control", "no-cache")
		fsrv.ServeHTTP(w, r)
	})
}
