package discordtest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// maxUpload is the most a message's file may hold: Discord's 10 MiB for
// a bot in a server without boosts.
const maxUpload = 10 << 20

// errTooLarge is a file over maxUpload, answered 413 as Discord does.
var errTooLarge = errors.New("request entity too large")

// upload is a file sent with a message.
type upload struct {
	name, contentType string
	data              []byte
}

// readMessage reads a message create body: JSON, or multipart/form-data
// with the JSON in "payload_json" and the files in "files[n]", as
// discordgo sends a message with Files.
func readMessage(r *http.Request) (messageBody, []upload, error) {
	var body messageBody
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		return body, nil, readBody(r, &body)
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return body, nil, err
	}
	var ups []upload
	for range 16 {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return body, ups, nil
		}
		if err != nil {
			return body, nil, err
		}
		data, err := io.ReadAll(io.LimitReader(part, maxUpload+1))
		switch {
		case err != nil:
			return body, nil, err
		case len(data) > maxUpload:
			return body, nil, errTooLarge
		case part.FormName() == "payload_json":
			if err := json.Unmarshal(data, &body); err != nil {
				return body, nil, err
			}
		case strings.HasPrefix(part.FormName(), "files["):
			ups = append(ups, upload{name: part.FileName(), contentType: part.Header.Get("Content-Type"), data: data})
		}
	}
	return body, nil, errors.New("too many parts")
}

// writeMessageError answers a body readMessage could not read.
func writeMessageError(w http.ResponseWriter, err error) {
	if errors.Is(err, errTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, 40005, "Request entity too large")
		return
	}
	writeError(w, http.StatusBadRequest, 50109, "The request body contains invalid JSON.")
}

// attachLocked stores uploads for the fake to serve and returns them as
// the message's attachments; s.mu is held.
func (s *Server) attachLocked(ups []upload) []Attachment {
	var out []Attachment
	for _, u := range ups {
		id := s.NewID()
		path := "/attachments/" + id + "/" + u.name
		s.attachments[path] = attachmentData{u.contentType, u.data}
		url := s.srv.URL + path
		out = append(out, Attachment{ID: id, Filename: u.name, ContentType: u.contentType, Size: len(u.data), URL: url, ProxyURL: url})
	}
	return out
}

// AttachmentData returns the bytes the fake serves for an attachment URL.
func (s *Server) AttachmentData(url string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.attachments[strings.TrimPrefix(url, s.srv.URL)]
	return a.data, ok
}
