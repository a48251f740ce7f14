package slacktest

import (
	"encoding/json"
	"slices"
	"unicode/utf8"
)

// Task is a task card of a streamed message: the latest task_update chunk
// sent for its id.
type Task struct {
	ID, Title, Status string
	Details, Output   string
	Sources           []TaskSource
}

// TaskSource is a URL source of a task card.
type TaskSource struct {
	URL, Text string
}

// Task returns the message's task card with id, if any.
func (m Message) Task(id string) (Task, bool) {
	i := slices.IndexFunc(m.Tasks, func(t Task) bool { return t.ID == id })
	if i < 0 {
		return Task{}, false
	}
	return m.Tasks[i], true
}

// chunk is one element of a streaming call's chunks parameter.
type chunk struct {
	Type    string            `json:"type"`
	Text    *string           `json:"text"`
	ID      string            `json:"id"`
	Title   string            `json:"title"`
	Status  string            `json:"status"`
	Details string            `json:"details"`
	Output  string            `json:"output"`
	Sources []json.RawMessage `json:"sources"`
	Blocks  []json.RawMessage `json:"blocks"`
}

// The documented bounds of a task_update chunk's details and output.
const maxTaskText = 256

// parseChunks reads a chunks parameter ("" for none) as Slack does: a JSON
// array of markdown_text, task_update, plan_update and blocks chunks, each
// with its required fields; anything else is invalid_chunks.
func parseChunks(raw string) ([]chunk, string) {
	if raw == "" {
		return nil, ""
	}
	var cs []chunk
	if err := json.Unmarshal([]byte(raw), &cs); err != nil || len(cs) == 0 {
		return nil, "invalid_chunks"
	}
	for _, c := range cs {
		ok := true
		switch c.Type {
		case "markdown_text":
			ok = c.Text != nil && *c.Text != ""
		case "task_update":
			ok = c.ID != "" && c.Title != "" && slices.Contains([]string{"pending", "in_progress", "complete", "error"}, c.Status) &&
				utf8.RuneCountInString(c.Details) <= maxTaskText && utf8.RuneCountInString(c.Output) <= maxTaskText
			for _, raw := range c.Sources {
				var s struct{ Type, URL, Text string }
				ok = ok && json.Unmarshal(raw, &s) == nil && s.Type == "url" && s.URL != "" && s.Text != ""
			}
		case "plan_update":
			ok = c.Title != ""
		case "blocks":
			ok = len(c.Blocks) > 0 && len(c.Blocks) <= 50
		default:
			ok = false
		}
		if !ok {
			return nil, "invalid_chunks"
		}
	}
	return cs, ""
}

// chunksMarkdown is the text the chunks' markdown_text chunks add.
func chunksMarkdown(cs []chunk) string {
	md := ""
	for _, c := range cs {
		if c.Type == "markdown_text" {
			md += *c.Text
		}
	}
	return md
}

// applyChunks shows the chunks in m: text appended, a task card added or
// updated in place by its id, the plan's title set. The tasks are copied,
// not changed in place: copies of m handed out keep what they showed.
func applyChunks(m *Message, cs []chunk) {
	tasks := slices.Clone(m.Tasks)
	for _, c := range cs {
		switch c.Type {
		case "markdown_text":
			m.Markdown += *c.Text
		case "task_update":
			t := Task{ID: c.ID, Title: c.Title, Status: c.Status, Details: c.Details, Output: c.Output}
			for _, raw := range c.Sources {
				var s TaskSource
				_ = json.Unmarshal(raw, &s) // checked by parseChunks
				t.Sources = append(t.Sources, s)
			}
			if i := slices.IndexFunc(tasks, func(o Task) bool { return o.ID == c.ID }); i >= 0 {
				tasks[i] = t
			} else {
				tasks = append(tasks, t)
			}
		case "plan_update":
			m.PlanTitle = c.Title
		}
	}
	m.Tasks = tasks
}
