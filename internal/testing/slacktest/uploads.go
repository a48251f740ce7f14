package slacktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Upload is a file the bot shared with Slack's external upload flow:
// files.getUploadURLExternal, a POST of the bytes to the upload URL,
// then files.completeUploadExternal.
type Upload struct {
	FileID   string
	Name     string // filename given to files.getUploadURLExternal
	Title    string // the title given to files.completeUploadExternal
	AltText  string
	Data     []byte
	Channel  string
	ThreadTS string // "" at the top of the channel
	Comment  string // initial_comment: the message the files are shared with
	Time     time.Time
}

// pendingUpload is an upload URL handed out, not yet completed.
type pendingUpload struct {
	name, alt string
	length    int
	data      []byte
	uploaded  bool
}

// maxUpload bounds one uploaded file, as Slack's 1 GB does (smaller here).
const maxUpload = 64 << 20

// Uploads returns the files shared so far, in order.
func (s *Server) Uploads() []Upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.shared)
}

// uploadURL answers files.getUploadURLExternal; s.mu is held.
func (s *Server) uploadURL(req *apiRequest) any {
	if !contains(s.opts.Scopes, "files:write") {
		return apiError("missing_scope")
	}
	n, err := strconv.Atoi(req.get("length"))
	switch {
	case req.get("filename") == "":
		return apiError("invalid_arguments")
	case err != nil || n <= 0 || n > maxUpload:
		return apiError("invalid_length")
	}
	id := fmt.Sprintf("F%06d", s.idCounter.Add(1))
	if s.uploads == nil {
		s.uploads = map[string]*pendingUpload{}
	}
	s.uploads[id] = &pendingUpload{name: req.get("filename"), alt: req.get("alt_txt"), length: n}
	return map[string]any{"ok": true, "upload_url": s.hs.URL + "/upload/" + id, "file_id": id}
}

// serveUpload receives a file's bytes at its upload URL (multipart field
// "file", or a raw body), as files.slack.com does.
func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	s.wg.Add(1)
	defer s.wg.Done()
	id := strings.TrimPrefix(r.URL.Path, "/upload/")
	var data []byte
	var err error
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		r.Body = http.MaxBytesReader(w, r.Body, maxUpload+1<<20)
		var f io.ReadCloser
		if f, _, err = r.FormFile("file"); err == nil {
			data, err = io.ReadAll(f)
			f.Close()
		}
	} else {
		data, err = io.ReadAll(io.LimitReader(r.Body, maxUpload+1))
	}
	s.mu.Lock()
	s.callCount["files.upload"]++
	p := s.uploads[id]
	result := "ok"
	switch {
	case p == nil:
		result = "http_error"
	case err != nil || len(data) != p.length:
		result = "error"
	default:
		p.data, p.uploaded = data, true
	}
	s.record(Call{Method: "files.upload", Params: map[string][]string{"file": {id}}, Time: time.Now(), Result: result})
	s.mu.Unlock()
	switch result {
	case "http_error":
		http.NotFound(w, r)
	case "error":
		http.Error(w, "the upload is not the length announced", http.StatusBadRequest)
	default:
		fmt.Fprintf(w, "OK - %d", len(data))
	}
}

// completeUpload answers files.completeUploadExternal: every file must be
// uploaded; they are shared in channel_id (in thread_ts) with the
// initial comment; s.mu is held.
func (s *Server) completeUpload(req *apiRequest, now time.Time) any {
	var files []struct{ ID, Title string }
	if err := json.Unmarshal([]byte(req.get("files")), &files); err != nil || len(files) == 0 {
		return apiError("invalid_arguments")
	}
	channel := req.get("channel_id")
	if channel == "" && req.get("channels") == "" {
		return apiError("channel_not_found")
	}
	for _, f := range files {
		if p := s.uploads[f.ID]; p == nil || !p.uploaded {
			return apiError("file_not_found")
		}
	}
	out := make([]map[string]string, 0, len(files))
	for _, f := range files {
		p := s.uploads[f.ID]
		delete(s.uploads, f.ID)
		title := f.Title
		if title == "" {
			title = p.name
		}
		s.files[f.ID] = &storedFile{id: f.ID, name: p.name, mimetype: http.DetectContentType(p.data),
			filetype: strings.TrimPrefix(extension(p.name), "."), data: bytes.Clone(p.data)}
		s.shared = append(s.shared, Upload{FileID: f.ID, Name: p.name, Title: title, AltText: p.alt, Data: p.data,
			Channel: channel, ThreadTS: req.get("thread_ts"), Comment: req.get("initial_comment"), Time: now})
		out = append(out, map[string]string{"id": f.ID, "title": title})
	}
	return map[string]any{"ok": true, "files": out}
}
