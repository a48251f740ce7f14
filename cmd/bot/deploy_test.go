package main

import (
	"os"
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
