package main

import (
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"

	"github.com/tokenhandler/tokenhandler/web"
)

// staticHandler serves the SPA's files from dir. A path that names a file serves it; a
// path with no file extension that names nothing (a client-side route such as
// /orders/42) serves index.html, so deep links work; anything else is a JSON 404.
//
// index.html is served with "Cache-Control: no-cache" (revalidated on every visit, so a
// deploy is seen at once); other files may be cached for five minutes and are
// revalidated by Last-Modified after that.
func staticHandler(dir string) http.Handler {
	root := os.DirFS(dir)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			web.Error(w, http.StatusMethodNotAllowed, web.CodeMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" || strings.HasSuffix(r.URL.Path, "/") {
			name = path.Join(name, "index.html")
		}
		if fi, err := fs.Stat(root, name); err != nil || fi.IsDir() {
			if path.Ext(name) != "" && path.Base(name) != "index.html" {
				web.Error(w, http.StatusNotFound, web.CodeNotFound)
				return
			}
			name = "index.html" // a client-side route: the SPA decides
			if _, err := fs.Stat(root, name); err != nil {
				web.Error(w, http.StatusNotFound, web.CodeNotFound)
				return
			}
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if path.Base(name) == "index.html" {
			h.Set("Cache-Control", "no-cache")
		} else {
			h.Set("Cache-Control", "public, max-age=300")
		}
		f, err := root.Open(name)
		if err != nil {
			web.Error(w, http.StatusNotFound, web.CodeNotFound)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		rs, ok := f.(io.ReadSeeker)
		if err != nil || !ok {
			web.Error(w, http.StatusNotFound, web.CodeNotFound)
			return
		}
		// ServeContent sets Content-Type from the extension and handles Range and
		// If-Modified-Since; unlike ServeFile it never redirects ".../index.html".
		http.ServeContent(w, r, name, fi.ModTime(), rs)
	})
}
