package main

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// docker compose can't run here; this checks what the README promises of
// docker-compose.yml: Redis with AOF and a health check, the bot built from
// the Dockerfile and waiting for a healthy Redis, secrets from .env.
func TestDockerComposeFile(t *testing.T) {
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Image       string         `yaml:"image"`
			Build       string         `yaml:"build"`
			Command     []string       `yaml:"command"`
			EnvFile     string         `yaml:"env_file"`
			DependsOn   map[string]any `yaml:"depends_on"`
			Healthcheck map[string]any `yaml:"healthcheck"`
			Environment map[string]string
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	redis, bot := c.Services["redis"], c.Services["bot"]
	if !strings.Contains(strings.Join(redis.Command, " "), "--appendonly yes") || redis.Healthcheck == nil {
		t.Errorf("redis service lacks AOF persistence or a health check: %+v", redis)
	}
	if bot.Build != "." || bot.Image == "" || bot.EnvFile != ".env" || bot.DependsOn["redis"] == nil {
		t.Errorf("bot service: %+v", bot)
	}
	if !strings.HasPrefix(bot.Environment["REDIS_URL"], "redis://redis:") {
		t.Errorf("bot does not point at the compose Redis: %q", bot.Environment["REDIS_URL"])
	}
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/bot", "nonroot", "AS build"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	env, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"ARK_API_KEY=", "SLACK_BOT_TOKEN=", "DISCORD_BOT_TOKEN="} {
		if !strings.Contains(string(env), v) {
			t.Errorf(".env.example lacks %s", v)
		}
	}
}

// dockerIgnored reads .dockerignore's patterns and reports whether the
// build context leaves out path (slash-separated, from the top), as
// Docker does: a pattern matches the path or one of its directories, **
// spans directories, * and ? don't, and the last matching pattern decides
// (a leading ! keeps).
func dockerIgnored(t *testing.T) func(path string) bool {
	t.Helper()
	raw, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	type rule struct {
		re   *regexp.Regexp
		keep bool
	}
	var rules []rule
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		keep := strings.HasPrefix(line, "!")
		pat := strings.TrimPrefix(path.Clean(strings.TrimPrefix(line, "!")), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(pat); i++ {
			switch {
			case strings.HasPrefix(pat[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(pat[i:], "**"):
				re.WriteString(".*")
				i++
			case pat[i] == '*':
				re.WriteString("[^/]*")
			case pat[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(pat[i : i+1]))
			}
		}
		re.WriteString("$")
		rules = append(rules, rule{regexp.MustCompile(re.String()), keep})
	}
	return func(p string) bool {
		ignored := false
		for _, r := range rules {
			for q := p; q != "."; q = path.Dir(q) {
				if r.re.MatchString(q) {
					ignored = !r.keep
					break
				}
			}
		}
		return ignored
	}
}

// The Dockerfile copies the whole build context: .dockerignore keeps
// secrets, git history, local binaries, profiles and editor files out of
// it, and everything the build needs in.
func TestDockerIgnore(t *testing.T) {
	ignored := dockerIgnored(t)
	for _, p := range []string{
		".env", "deploy/.env", ".env.local", "prod.env",
		".git", ".git/config",
		"bot", "loadtest", "run",
		"cmd/bot/bot.test", "cpu.pprof", "mem.prof", "cmd/bot/coverage.out", "coverage.html",
		".idea/workspace.xml", ".vscode/settings.json", "config/.config.go.swp", "config.yaml~", ".DS_Store",
	} {
		if !ignored(p) {
			t.Errorf("%s is copied into the build context", p)
		}
	}
	for _, p := range []string{"go.mod", "go.sum", "config.yaml", "Dockerfile", "cmd/bot/main.go", "cmd/loadtest/main.go", ".ci/run"} {
		if ignored(p) {
			t.Errorf("%s is left out of the build context", p)
		}
	}
	// Every Go file of the module is in the context.
	err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("../..", p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() && rel == ".git" {
			return filepath.SkipDir
		}
		if strings.HasSuffix(rel, ".go") && ignored(rel) {
			t.Errorf("%s is left out of the build context", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
