package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arkbot/arkbot/internal/testing/arktest"
	"github.com/arkbot/arkbot/internal/testing/redistest"
)

// -check tries a model with api: responses through the Responses API,
// with a small request Ark does not store.
func TestCheckTriesResponsesModels(t *testing.T) {
	rs := redistest.New(t)
	ark := arktest.New(arktest.WithAPIKey(testKey))
	defer ark.Close()
	p := filepath.Join(t.TempDir(), "config.yaml")
	cfg := fmt.Sprintf(`
ark: {base_url: %s, api_key: "${TEST_ARK_KEY}"}
models:
  - {name: seed, id: doubao-seed-1-6-250615, api: responses, search: {enabled: true}}
redis: {url: %q, prefix: tcheckresp}
`, ark.URL, rs.URL)
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_ARK_KEY", testKey)
	out, code := runCheck(t, p)
	if code != 0 || !strings.Contains(out, "  ok    seed (doubao-seed-1-6-250615): answers") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	reqs := ark.Requests()
	if len(reqs) != 1 || reqs[0].Path != arktest.ResponsesPath || reqs[0].Store || reqs[0].Body["max_output_tokens"] != 16.0 {
		t.Fatalf("requests %+v", reqs)
	}
}
