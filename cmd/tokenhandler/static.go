package main

import (
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/tokenhandler/tokenhandler/web"
)

// staticHandler serves the SPA's files from dir: exact files, and index.html for a
// directory. Anything else is a JSON 404.
func staticHandler(dir string) http.Handler {
	root := os.DirFS(dir)
	fs := http.FileServerFS(root)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			web.Error(w, http.StatusMethodNotAllowed, web.CodeMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if name == "" || strings.HasSuffix(r.URL.Path, "/") {
			name = path.Join(name, "index.html")
		}
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil || fi.IsDir() {
			web.Error(w, http.StatusNotFound, web.CodeNotFound)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		if name == "index.html" || strings.HasSuffix(name, "/index.html") {
			// FileServer redirects ".../index.html" to "./"; serve the file itself.
			http.ServeFileFS(w, r2, root, name)
			return
		}
		fs.ServeHTTP(w, r2)
	})
}
