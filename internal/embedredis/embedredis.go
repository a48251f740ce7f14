// Package embedredis runs an in-process Redis (miniredis) whose keys expire
// in real time, for the zero-setup default and for tests.
package embedredis

import (
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// tick is how often TTLs advance; expiry is accurate to about this.
const tick = 100 * time.Millisecond

// Server is a running embedded Redis.
type Server struct {
	*miniredis.Miniredis
	stop chan struct{}
	once sync.Once
	done chan struct{}
}

// Start runs an embedded Redis on 127.0.0.1. miniredis only expires keys
// when told time has passed, so a goroutine advances its clock, making lock,
// dedupe and conversation TTLs behave as on a real server.
func Start() (*Server, error) {
	mr, err := miniredis.Run()
	if err != nil {
		return nil, err
	}
	s := &Server{Miniredis: mr, stop: make(chan struct{}), done: make(chan struct{})}
	go s.advance()
	return s, nil
}

func (s *Server) advance() {
	defer close(s.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.FastForward(now.Sub(last))
			last = now
		}
	}
}

// Client returns a go-redis client for the server.
func (s *Server) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.Addr()})
}

// Close stops the clock and the server.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		s.Miniredis.Close()
	})
}
