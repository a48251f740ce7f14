package discord

import (
	"container/list"
	"sync"
)

// lru is a small, size-bounded, concurrency-safe least-recently-used map.
type lru[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recent
	items map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, order: list.New(), items: make(map[K]*list.Element)}
}

func (l *lru[K, V]) Get(k K) (V, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.items[k]; ok {
		l.order.MoveToFront(e)
		return e.Value.(*lruEntry[K, V]).val, true
	}
	var zero V
	return zero, false
}

func (l *lru[K, V]) Add(k K, v V) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.items[k]; ok {
		e.Value.(*lruEntry[K, V]).val = v
		l.order.MoveToFront(e)
		return
	}
	l.items[k] = l.order.PushFront(&lruEntry[K, V]{k, v})
	for l.order.Len() > l.max {
		last := l.order.Back()
		l.order.Remove(last)
		delete(l.items, last.Value.(*lruEntry[K, V]).key)
	}
}

// GetOrAdd returns the value for k, adding mk() first if absent.
func (l *lru[K, V]) GetOrAdd(k K, mk func() V) V {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.items[k]; ok {
		l.order.MoveToFront(e)
		return e.Value.(*lruEntry[K, V]).val
	}
	v := mk()
	l.items[k] = l.order.PushFront(&lruEntry[K, V]{k, v})
	for l.order.Len() > l.max {
		last := l.order.Back()
		l.order.Remove(last)
		delete(l.items, last.Value.(*lruEntry[K, V]).key)
	}
	return v
}

func (l *lru[K, V]) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.order.Init()
	l.items = make(map[K]*list.Element)
}

func (l *lru[K, V]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.order.Len()
}
